// Package intent is the typed egress intent model: what operators declare in
// ConfigMaps, parsed strictly and validated with field paths.
package intent

import (
	"time"
)

// LabelKey selects the ConfigMaps that carry egress intent.
const LabelKey = "egress-xds.io/intent"

// Document is the content of one data key of an intent ConfigMap.
type Document struct {
	// Gateways lists the gateway groups (Envoy node.cluster) this intent
	// applies to. Empty means every group.
	Gateways     []string      `yaml:"gateways,omitempty"`
	Destinations []Destination `yaml:"destinations"`
}

// Destination is one external host and how workloads may reach it.
type Destination struct {
	Name             string            `yaml:"name"`
	Host             string            `yaml:"host"`
	Ports            []Port            `yaml:"ports"`
	Resolution       Resolution        `yaml:"resolution,omitempty"`
	Endpoints        []Endpoint        `yaml:"endpoints,omitempty"`
	TLS              *TLSOrigination   `yaml:"tls,omitempty"`
	Allow            *[]Source         `yaml:"allow,omitempty"`
	RateLimit        *RateLimit        `yaml:"rateLimit,omitempty"`
	Timeout          *Duration         `yaml:"timeout,omitempty"`
	Retries          *Retries          `yaml:"retries,omitempty"`
	ConnectionPool   *ConnectionPool   `yaml:"connectionPool,omitempty"`
	OutlierDetection *OutlierDetection `yaml:"outlierDetection,omitempty"`
	LoadBalancer     LoadBalancer      `yaml:"loadBalancer,omitempty"`

	// Methods and Paths narrow what every source may ask of the
	// destination's HTTP ports (httprules.go); an allow entry may set its
	// own.
	Methods []string   `yaml:"methods,omitempty"`
	Paths   []PathRule `yaml:"paths,omitempty"`
}

// Port is a port workloads connect to on the gateway for this host.
type Port struct {
	Number   uint32   `yaml:"number"`
	Protocol Protocol `yaml:"protocol"`
	// TargetPort is the upstream port when it differs from Number
	// (ignored for HTTP ports with TLS origination, which use tls.port).
	TargetPort uint32 `yaml:"targetPort,omitempty"`
}

// Protocol is what workloads speak on a port.
type Protocol string

const (
	ProtocolTLS   Protocol = "TLS"   // SNI passthrough
	ProtocolHTTPS Protocol = "HTTPS" // same as TLS: the gateway never terminates it
	ProtocolHTTP  Protocol = "HTTP"
	ProtocolTCP   Protocol = "TCP"
)

// Passthrough reports whether the gateway routes this protocol by SNI without
// terminating TLS.
func (p Protocol) Passthrough() bool { return p == ProtocolTLS || p == ProtocolHTTPS }

// Resolution is how the gateway finds the upstream addresses.
type Resolution string

const (
	ResolutionDNS           Resolution = "DNS"             // STRICT_DNS: every address, re-resolved
	ResolutionDNSRoundRobin Resolution = "DNS_ROUND_ROBIN" // LOGICAL_DNS: first address per connection
	ResolutionStatic        Resolution = "STATIC"          // the endpoints listed
	ResolutionDynamic       Resolution = "DYNAMIC"         // dynamic forward proxy: resolve the requested name
)

// Endpoint is one upstream address.
type Endpoint struct {
	Address string            `yaml:"address"`
	Port    uint32            `yaml:"port,omitempty"`
	Labels  map[string]string `yaml:"labels,omitempty"`
	Weight  uint32            `yaml:"weight,omitempty"`
}

// TLSMode is how the gateway originates TLS toward the destination.
type TLSMode string

const (
	TLSSimple TLSMode = "SIMPLE"
	TLSMutual TLSMode = "MUTUAL"
)

// TLSOrigination makes the gateway speak TLS upstream for HTTP ports.
type TLSOrigination struct {
	Mode TLSMode `yaml:"mode"`
	Port uint32  `yaml:"port,omitempty"` // upstream port, default 443
	SNI  string  `yaml:"sni,omitempty"`  // default: host
	// CACertificates names a Secret (key ca.crt) to verify the server with;
	// without it the system CA bundle is used.
	CACertificates *SecretRef `yaml:"caCertificates,omitempty"`
	// ClientCertificate names a kubernetes.io/tls Secret (tls.crt, tls.key)
	// presented to the server; required for MUTUAL.
	ClientCertificate *SecretRef `yaml:"clientCertificate,omitempty"`
	// SubjectAltNames the server certificate must carry; default: sni.
	SubjectAltNames []string `yaml:"subjectAltNames,omitempty"`
	// InsecureSkipVerify turns server verification off. Explicit and loud:
	// every translation warns about it.
	InsecureSkipVerify bool `yaml:"insecureSkipVerify,omitempty"`
}

// SecretRef names a Secret in the intent's namespace.
type SecretRef struct {
	Secret string `yaml:"secret"`
}

// Source is one allowed client. Exactly one field is set. Principal and
// Namespace are workload identities carried by mutual TLS to the gateway.
type Source struct {
	CIDR      string `yaml:"cidr,omitempty"`
	Principal string `yaml:"principal,omitempty"`
	Namespace string `yaml:"namespace,omitempty"`
	// Methods and Paths narrow what this source may ask on HTTP ports;
	// unset, the destination's apply (httprules.go).
	Methods []string   `yaml:"methods,omitempty"`
	Paths   []PathRule `yaml:"paths,omitempty"`
}

// RateLimit is a local token bucket per gateway (requests for HTTP ports,
// connections for TLS and TCP ports), a global limit shared by every
// gateway (ratelimit_global.go), or both.
type RateLimit struct {
	MaxTokens     uint32           `yaml:"maxTokens"`
	TokensPerFill uint32           `yaml:"tokensPerFill,omitempty"` // default 1
	FillInterval  *Duration        `yaml:"fillInterval"`
	Global        *GlobalRateLimit `yaml:"global,omitempty"`
}

// Local reports whether a local token bucket is set.
func (rl *RateLimit) Local() bool {
	return rl != nil && (rl.MaxTokens != 0 || rl.FillInterval != nil || rl.TokensPerFill != 0)
}

// Retries apply to HTTP ports.
type Retries struct {
	Attempts      uint32    `yaml:"attempts"`
	PerTryTimeout *Duration `yaml:"perTryTimeout,omitempty"`
	On            []string  `yaml:"on,omitempty"` // Envoy retry_on conditions; default 5xx,connect-failure,reset
}

// ConnectionPool sets circuit breakers and connection limits.
type ConnectionPool struct {
	MaxConnections           uint32    `yaml:"maxConnections,omitempty"`
	MaxPendingRequests       uint32    `yaml:"maxPendingRequests,omitempty"`
	MaxRequests              uint32    `yaml:"maxRequests,omitempty"`
	MaxRetries               uint32    `yaml:"maxRetries,omitempty"`
	MaxRequestsPerConnection uint32    `yaml:"maxRequestsPerConnection,omitempty"`
	ConnectTimeout           *Duration `yaml:"connectTimeout,omitempty"`
	IdleTimeout              *Duration `yaml:"idleTimeout,omitempty"`
}

// OutlierDetection ejects failing upstream hosts.
type OutlierDetection struct {
	Consecutive5xxErrors     *uint32   `yaml:"consecutive5xxErrors,omitempty"`
	ConsecutiveGatewayErrors *uint32   `yaml:"consecutiveGatewayErrors,omitempty"`
	Interval                 *Duration `yaml:"interval,omitempty"`
	BaseEjectionTime         *Duration `yaml:"baseEjectionTime,omitempty"`
	MaxEjectionPercent       *uint32   `yaml:"maxEjectionPercent,omitempty"`
}

// LoadBalancer is the upstream load-balancing policy.
type LoadBalancer string

const (
	LBRoundRobin   LoadBalancer = "ROUND_ROBIN"
	LBLeastRequest LoadBalancer = "LEAST_REQUEST"
	LBRandom       LoadBalancer = "RANDOM"
)

// Duration is a time.Duration written as "10s", "250ms".
type Duration struct{ time.Duration }

// UnmarshalText parses Go duration syntax.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText prints Go duration syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }
