package bootstrap

// LaptopFile is the bootstrap of the README's laptop quick start, shipped
// as laptop.yaml: Laptop rendered (TestLaptopFile keeps the two equal).
const LaptopFile = "laptop.yaml"

// Laptop are the parameters of one gateway beside a server run on the same
// machine with --xds-address 127.0.0.1:18000: node "laptop" of the default
// group, admin on 127.0.0.1:9901, and no Prometheus listener (it would bind
// every interface; the admin interface serves /stats on loopback).
var Laptop = Params{NodeID: "laptop", XDSHost: "127.0.0.1", XDSPort: DefaultXDSPort, AdminPort: DefaultAdminPort, StatsPort: -1}
