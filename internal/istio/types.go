package istio

// The Istio objects the importer reads, as small typed structs with the
// fields of the Istio API (networking.istio.io v1alpha3/v1beta1/v1,
// security.istio.io v1beta1/v1, telemetry.istio.io, install.istio.io),
// so that every field is known: anything else in an object is reported as
// unknown rather than dropped. Fields that are only ever reported, never
// carried, are Raw.

// Meta is an object's metadata; what the importer does not use (uid,
// managedFields... as kubectl get prints them) is kept aside, not reported.
type Meta struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels"`
	Rest      map[string]Raw    `json:",inline"`
}

// --- networking.istio.io ---

type ServiceEntry struct {
	Hosts            []string          `json:"hosts"`
	Addresses        []string          `json:"addresses"`
	Ports            []ServicePort     `json:"ports"`
	Location         string            `json:"location"`
	Resolution       string            `json:"resolution"`
	Endpoints        []WorkloadEntry   `json:"endpoints"`
	WorkloadSelector *WorkloadSelector `json:"workloadSelector"`
	ExportTo         []string          `json:"exportTo"`
	SubjectAltNames  []string          `json:"subjectAltNames"`
}

type ServicePort struct {
	Number     uint32 `json:"number"`
	Protocol   string `json:"protocol"`
	Name       string `json:"name"`
	TargetPort uint32 `json:"targetPort"`
}

type WorkloadEntry struct {
	Address        string            `json:"address"`
	Ports          map[string]uint32 `json:"ports"`
	Labels         map[string]string `json:"labels"`
	Network        string            `json:"network"`
	Locality       string            `json:"locality"`
	Weight         uint32            `json:"weight"`
	ServiceAccount string            `json:"serviceAccount"`
}

type WorkloadSelector struct {
	Labels map[string]string `json:"labels"`
}

type Gateway struct {
	Servers  []Server          `json:"servers"`
	Selector map[string]string `json:"selector"`
}

type Server struct {
	Port            *ServicePort `json:"port"`
	Bind            string       `json:"bind"`
	Hosts           []string     `json:"hosts"`
	TLS             *ServerTLS   `json:"tls"`
	DefaultEndpoint string       `json:"defaultEndpoint"`
	Name            string       `json:"name"`
}

type ServerTLS struct {
	HTTPSRedirect         bool     `json:"httpsRedirect"`
	Mode                  string   `json:"mode"`
	ServerCertificate     string   `json:"serverCertificate"`
	PrivateKey            string   `json:"privateKey"`
	CACertificates        string   `json:"caCertificates"`
	CACrl                 string   `json:"caCrl"`
	CredentialName        string   `json:"credentialName"`
	CredentialNames       []string `json:"credentialNames"`
	TLSCertificates       Raw      `json:"tlsCertificates"`
	SubjectAltNames       []string `json:"subjectAltNames"`
	VerifyCertificateSpki []string `json:"verifyCertificateSpki"`
	VerifyCertificateHash []string `json:"verifyCertificateHash"`
	MinProtocolVersion    string   `json:"minProtocolVersion"`
	MaxProtocolVersion    string   `json:"maxProtocolVersion"`
	CipherSuites          []string `json:"cipherSuites"`
}

type VirtualService struct {
	Hosts    []string    `json:"hosts"`
	Gateways []string    `json:"gateways"`
	HTTP     []HTTPRoute `json:"http"`
	TLS      []TLSRoute  `json:"tls"`
	TCP      []TCPRoute  `json:"tcp"`
	ExportTo []string    `json:"exportTo"`
}

type HTTPRoute struct {
	Name             string             `json:"name"`
	Match            []HTTPMatch        `json:"match"`
	Route            []RouteDestination `json:"route"`
	Redirect         Raw                `json:"redirect"`
	DirectResponse   Raw                `json:"directResponse"`
	Delegate         Raw                `json:"delegate"`
	Rewrite          Raw                `json:"rewrite"`
	Timeout          *Duration          `json:"timeout"`
	Retries          *HTTPRetry         `json:"retries"`
	Fault            *Fault             `json:"fault"`
	Mirror           Raw                `json:"mirror"`
	Mirrors          Raw                `json:"mirrors"`
	MirrorPercentage Raw                `json:"mirrorPercentage"`
	MirrorPercent    Raw                `json:"mirrorPercent"`
	CorsPolicy       Raw                `json:"corsPolicy"`
	Headers          Raw                `json:"headers"`
}

type Fault struct {
	Delay Raw `json:"delay"`
	Abort Raw `json:"abort"`
}

type HTTPMatch struct {
	Name            string            `json:"name"`
	URI             Raw               `json:"uri"`
	Scheme          Raw               `json:"scheme"`
	Method          Raw               `json:"method"`
	Authority       Raw               `json:"authority"`
	Headers         Raw               `json:"headers"`
	Port            uint32            `json:"port"`
	SourceLabels    map[string]string `json:"sourceLabels"`
	Gateways        []string          `json:"gateways"`
	QueryParams     Raw               `json:"queryParams"`
	IgnoreURICase   bool              `json:"ignoreUriCase"`
	WithoutHeaders  Raw               `json:"withoutHeaders"`
	SourceNamespace string            `json:"sourceNamespace"`
	StatPrefix      string            `json:"statPrefix"`
}

type TLSRoute struct {
	Match []TLSMatch         `json:"match"`
	Route []RouteDestination `json:"route"`
}

type TLSMatch struct {
	SniHosts           []string          `json:"sniHosts"`
	DestinationSubnets []string          `json:"destinationSubnets"`
	Port               uint32            `json:"port"`
	SourceLabels       map[string]string `json:"sourceLabels"`
	Gateways           []string          `json:"gateways"`
	SourceNamespace    string            `json:"sourceNamespace"`
}

type TCPRoute struct {
	Match []L4Match          `json:"match"`
	Route []RouteDestination `json:"route"`
}

type L4Match struct {
	DestinationSubnets []string          `json:"destinationSubnets"`
	Port               uint32            `json:"port"`
	SourceSubnet       string            `json:"sourceSubnet"`
	SourceLabels       map[string]string `json:"sourceLabels"`
	Gateways           []string          `json:"gateways"`
	SourceNamespace    string            `json:"sourceNamespace"`
}

// RouteDestination is HTTPRouteDestination and RouteDestination alike;
// headers is HTTP only (Istio refuses it elsewhere).
type RouteDestination struct {
	Destination *Destination `json:"destination"`
	Weight      int32        `json:"weight"`
	Headers     Raw          `json:"headers"`
}

type Destination struct {
	Host   string        `json:"host"`
	Subset string        `json:"subset"`
	Port   *PortSelector `json:"port"`
}

type PortSelector struct {
	Number uint32 `json:"number"`
}

type HTTPRetry struct {
	Attempts                 int32     `json:"attempts"`
	PerTryTimeout            *Duration `json:"perTryTimeout"`
	RetryOn                  string    `json:"retryOn"`
	RetryRemoteLocalities    *bool     `json:"retryRemoteLocalities"`
	RetryIgnorePreviousHosts *bool     `json:"retryIgnorePreviousHosts"`
	Backoff                  *Duration `json:"backoff"`
}

type DestinationRule struct {
	Host             string         `json:"host"`
	TrafficPolicy    *TrafficPolicy `json:"trafficPolicy"`
	Subsets          []Subset       `json:"subsets"`
	ExportTo         []string       `json:"exportTo"`
	WorkloadSelector *LabelSelector `json:"workloadSelector"`
}

type Subset struct {
	Name          string            `json:"name"`
	Labels        map[string]string `json:"labels"`
	TrafficPolicy *TrafficPolicy    `json:"trafficPolicy"`
}

// TrafficPolicy is also a port's settings (portLevelSettings items, with
// port set, and no portLevelSettings of their own).
type TrafficPolicy struct {
	Port              *PortSelector     `json:"port"`
	LoadBalancer      *LoadBalancer     `json:"loadBalancer"`
	ConnectionPool    *ConnectionPool   `json:"connectionPool"`
	OutlierDetection  *OutlierDetection `json:"outlierDetection"`
	TLS               *ClientTLS        `json:"tls"`
	PortLevelSettings []TrafficPolicy   `json:"portLevelSettings"`
	Tunnel            Raw               `json:"tunnel"`
	ProxyProtocol     Raw               `json:"proxyProtocol"`
	RetryBudget       Raw               `json:"retryBudget"`
}

type LoadBalancer struct {
	Simple             string    `json:"simple"`
	ConsistentHash     Raw       `json:"consistentHash"`
	LocalityLbSetting  Raw       `json:"localityLbSetting"`
	WarmupDurationSecs *Duration `json:"warmupDurationSecs"`
	Warmup             Raw       `json:"warmup"`
}

type ConnectionPool struct {
	TCP  *TCPSettings  `json:"tcp"`
	HTTP *HTTPSettings `json:"http"`
}

type TCPSettings struct {
	MaxConnections        int32     `json:"maxConnections"`
	ConnectTimeout        *Duration `json:"connectTimeout"`
	TCPKeepalive          Raw       `json:"tcpKeepalive"`
	MaxConnectionDuration *Duration `json:"maxConnectionDuration"`
	IdleTimeout           *Duration `json:"idleTimeout"`
}

type HTTPSettings struct {
	HTTP1MaxPendingRequests  int32     `json:"http1MaxPendingRequests"`
	HTTP2MaxRequests         int32     `json:"http2MaxRequests"`
	MaxRequestsPerConnection int32     `json:"maxRequestsPerConnection"`
	MaxRetries               int32     `json:"maxRetries"`
	IdleTimeout              *Duration `json:"idleTimeout"`
	H2UpgradePolicy          string    `json:"h2UpgradePolicy"`
	UseClientProtocol        bool      `json:"useClientProtocol"`
	MaxConcurrentStreams     int32     `json:"maxConcurrentStreams"`
}

type OutlierDetection struct {
	ConsecutiveErrors              int32     `json:"consecutiveErrors"`
	SplitExternalLocalOriginErrors bool      `json:"splitExternalLocalOriginErrors"`
	ConsecutiveLocalOriginFailures *uint32   `json:"consecutiveLocalOriginFailures"`
	ConsecutiveGatewayErrors       *uint32   `json:"consecutiveGatewayErrors"`
	Consecutive5xxErrors           *uint32   `json:"consecutive5xxErrors"`
	Interval                       *Duration `json:"interval"`
	BaseEjectionTime               *Duration `json:"baseEjectionTime"`
	MaxEjectionPercent             *int32    `json:"maxEjectionPercent"`
	MinHealthPercent               int32     `json:"minHealthPercent"`
}

type ClientTLS struct {
	Mode               string   `json:"mode"`
	ClientCertificate  string   `json:"clientCertificate"`
	PrivateKey         string   `json:"privateKey"`
	CACertificates     string   `json:"caCertificates"`
	CredentialName     string   `json:"credentialName"`
	SubjectAltNames    []string `json:"subjectAltNames"`
	SNI                string   `json:"sni"`
	InsecureSkipVerify *bool    `json:"insecureSkipVerify"`
	CACrl              string   `json:"caCrl"`
}

// Sidecar is read to be reported: its egress hosts narrow what a
// namespace's workloads reach.
type Sidecar struct {
	WorkloadSelector      *WorkloadSelector `json:"workloadSelector"`
	Ingress               Raw               `json:"ingress"`
	Egress                Raw               `json:"egress"`
	OutboundTrafficPolicy *OutboundPolicy   `json:"outboundTrafficPolicy"`
	InboundConnectionPool Raw               `json:"inboundConnectionPool"`
}

type EnvoyFilter struct {
	WorkloadSelector *WorkloadSelector `json:"workloadSelector"`
	TargetRefs       Raw               `json:"targetRefs"`
	ConfigPatches    []ConfigPatch     `json:"configPatches"`
	Priority         int32             `json:"priority"`
}

type ConfigPatch struct {
	ApplyTo string      `json:"applyTo"`
	Match   *PatchMatch `json:"match"`
	Patch   *Patch      `json:"patch"`
}

type PatchMatch struct {
	Context            string         `json:"context"`
	Proxy              Raw            `json:"proxy"`
	Listener           *ListenerMatch `json:"listener"`
	RouteConfiguration Raw            `json:"routeConfiguration"`
	Cluster            Raw            `json:"cluster"`
}

type ListenerMatch struct {
	PortNumber     uint32            `json:"portNumber"`
	PortName       string            `json:"portName"`
	FilterChain    *FilterChainMatch `json:"filterChain"`
	ListenerFilter string            `json:"listenerFilter"`
	Name           string            `json:"name"`
}

type FilterChainMatch struct {
	Name                 string       `json:"name"`
	Sni                  string       `json:"sni"`
	TransportProtocol    string       `json:"transportProtocol"`
	ApplicationProtocols string       `json:"applicationProtocols"`
	Filter               *FilterMatch `json:"filter"`
	DestinationPort      uint32       `json:"destinationPort"`
}

type FilterMatch struct {
	Name      string `json:"name"`
	SubFilter *struct {
		Name string `json:"name"`
	} `json:"subFilter"`
}

type Patch struct {
	Operation   string `json:"operation"`
	Value       Raw    `json:"value"`
	FilterClass string `json:"filterClass"`
}

// --- security.istio.io ---

type AuthorizationPolicy struct {
	Selector   *LabelSelector `json:"selector"`
	TargetRef  Raw            `json:"targetRef"`
	TargetRefs Raw            `json:"targetRefs"`
	Rules      []Rule         `json:"rules"`
	Action     string         `json:"action"`
	Provider   Raw            `json:"provider"`
}

type LabelSelector struct {
	MatchLabels map[string]string `json:"matchLabels"`
}

type Rule struct {
	From []struct {
		Source *Source `json:"source"`
	} `json:"from"`
	To []struct {
		Operation *Operation `json:"operation"`
	} `json:"to"`
	When []Condition `json:"when"`
}

type Source struct {
	Principals           []string `json:"principals"`
	NotPrincipals        []string `json:"notPrincipals"`
	RequestPrincipals    []string `json:"requestPrincipals"`
	NotRequestPrincipals []string `json:"notRequestPrincipals"`
	Namespaces           []string `json:"namespaces"`
	NotNamespaces        []string `json:"notNamespaces"`
	ServiceAccounts      []string `json:"serviceAccounts"`
	NotServiceAccounts   []string `json:"notServiceAccounts"`
	IPBlocks             []string `json:"ipBlocks"`
	NotIPBlocks          []string `json:"notIpBlocks"`
	RemoteIPBlocks       []string `json:"remoteIpBlocks"`
	NotRemoteIPBlocks    []string `json:"notRemoteIpBlocks"`
}

type Operation struct {
	Hosts      []string `json:"hosts"`
	NotHosts   []string `json:"notHosts"`
	Ports      []string `json:"ports"`
	NotPorts   []string `json:"notPorts"`
	Methods    []string `json:"methods"`
	NotMethods []string `json:"notMethods"`
	Paths      []string `json:"paths"`
	NotPaths   []string `json:"notPaths"`
}

type Condition struct {
	Key       string   `json:"key"`
	Values    []string `json:"values"`
	NotValues []string `json:"notValues"`
}

// --- telemetry.istio.io, monitoring.coreos.com, install.istio.io ---

type Telemetry struct {
	Selector      *LabelSelector `json:"selector"`
	TargetRef     Raw            `json:"targetRef"`
	TargetRefs    Raw            `json:"targetRefs"`
	AccessLogging []struct {
		Providers Raw   `json:"providers"`
		Filter    Raw   `json:"filter"`
		Disabled  *bool `json:"disabled"`
		Match     Raw   `json:"match"`
	} `json:"accessLogging"`
	Metrics []struct {
		Providers         Raw `json:"providers"`
		Overrides         Raw `json:"overrides"`
		ReportingInterval Raw `json:"reportingInterval"`
	} `json:"metrics"`
	Tracing Raw `json:"tracing"`
}

// IstioOperator is read for its mesh settings; the rest installs Istio.
type IstioOperator struct {
	Profile            string      `json:"profile"`
	Components         Raw         `json:"components"`
	MeshConfig         *MeshConfig `json:"meshConfig"`
	Values             Raw         `json:"values"`
	UnvalidatedValues  Raw         `json:"unvalidatedValues"`
	Hub                string      `json:"hub"`
	Tag                Raw         `json:"tag"`
	Revision           string      `json:"revision"`
	Namespace          string      `json:"namespace"`
	InstallPackagePath string      `json:"installPackagePath"`
}

// MeshConfig names the settings the report speaks of; the many others
// are each reported as mesh settings egress-xds has no use for.
type MeshConfig struct {
	OutboundTrafficPolicy *OutboundPolicy `json:"outboundTrafficPolicy"`
	AccessLogFile         *string         `json:"accessLogFile"`
	AccessLogFormat       *string         `json:"accessLogFormat"`
	AccessLogEncoding     *string         `json:"accessLogEncoding"`
	TrustDomain           *string         `json:"trustDomain"`
	RootNamespace         *string         `json:"rootNamespace"`
	Rest                  map[string]Raw  `json:",inline"`
}

type OutboundPolicy struct {
	Mode        string `json:"mode"`
	EgressProxy Raw    `json:"egressProxy"`
}
