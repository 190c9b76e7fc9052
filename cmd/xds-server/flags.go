package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/egress-xds/egress-xds/internal/translate"
)

// envPrefix names the environment variables that set flags.
const envPrefix = "EGRESS_XDS_"

// applyEnv sets every flag not given on the command line from its
// environment variable (--config-dir: EGRESS_XDS_CONFIG_DIR).
func applyEnv(fs *flag.FlagSet) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		env := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %w", env, e)
			}
		}
	})
	return err
}

// translateFlags are the gateway-level translation settings shared by
// serve and validate, so that validate judges input as the server would.
type translateFlags struct {
	forwardProxyPort uint
	portMap          portMap
	systemCA         string
	listenerAddress  string
	statsPort        uint
}

func (t *translateFlags) register(fs *flag.FlagSet) {
	fs.UintVar(&t.forwardProxyPort, "forward-proxy-port", 3128, "gateway port of the explicit HTTP proxy (CONNECT and absolute-form requests); 0 disables it")
	fs.Var(&t.portMap, "port-map", "listener port for a declared port, e.g. 443=8443,80=8080 for gateways running without privileges")
	fs.UintVar(&t.statsPort, "gateway-stats-port", 9902, "the gateways' Prometheus stats listener (envoy/bootstrap), kept out of intents; 0: none")
	fs.StringVar(&t.listenerAddress, "listener-address", "0.0.0.0", "address the gateways' listeners bind (127.0.0.1 for a gateway on a laptop)")
	fs.StringVar(&t.systemCA, "system-ca-bundle", translate.DefaultSystemCABundle, "CA bundle path inside the gateway, used to verify upstream servers when an intent names no CA Secret")
}

func (t *translateFlags) options() (translate.Options, error) {
	if t.forwardProxyPort > 65535 {
		return translate.Options{}, fmt.Errorf("--forward-proxy-port %d is not a valid port", t.forwardProxyPort)
	}
	if t.statsPort > 65535 || (t.statsPort != 0 && t.statsPort == t.forwardProxyPort) {
		return translate.Options{}, fmt.Errorf("--gateway-stats-port %d is not a valid port or is the forward proxy port", t.statsPort)
	}
	if _, err := netip.ParseAddr(t.listenerAddress); err != nil {
		return translate.Options{}, fmt.Errorf("--listener-address %q is not an IP address", t.listenerAddress)
	}
	seen := map[uint32]uint32{}
	for from, to := range t.portMap {
		if other, dup := seen[to]; dup {
			return translate.Options{}, fmt.Errorf("--port-map maps both %d and %d to %d", other, from, to)
		}
		seen[to] = from
		if uint(to) == t.forwardProxyPort && t.forwardProxyPort != 0 {
			return translate.Options{}, fmt.Errorf("--port-map maps %d to the forward proxy port %d", from, to)
		}
	}
	return translate.Options{
		Role:             translate.RoleGateway,
		ForwardProxyPort: uint32(t.forwardProxyPort),
		PortMap:          t.portMap,
		SystemCABundle:   t.systemCA,
		ListenerAddress:  t.listenerAddress,
		StatsPort:        uint32(t.statsPort),
	}, nil
}

// portMap is a flag.Value of declared=listener port pairs.
type portMap map[uint32]uint32

func (m *portMap) String() string {
	if m == nil || len(*m) == 0 {
		return ""
	}
	var parts []string
	for k, v := range *m {
		parts = append(parts, fmt.Sprintf("%d=%d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (m *portMap) Set(s string) error {
	if *m == nil {
		*m = portMap{}
	}
	for _, pair := range strings.Split(s, ",") {
		if pair = strings.TrimSpace(pair); pair == "" {
			continue
		}
		from, to, ok := strings.Cut(pair, "=")
		f, err1 := strconv.ParseUint(from, 10, 16)
		t, err2 := strconv.ParseUint(to, 10, 16)
		if !ok || err1 != nil || err2 != nil || f == 0 || t == 0 {
			return fmt.Errorf("%q is not declared=listener, e.g. 443=8443", pair)
		}
		(*m)[uint32(f)] = uint32(t)
	}
	return nil
}

// parseTranslateFlags parses a command line whose flags include tf, applies
// the environment, and returns the translation options; false means the
// problem was printed and the command exits 2.
func parseTranslateFlags(fs *flag.FlagSet, args []string, tf *translateFlags, stderr io.Writer) (translate.Options, bool) {
	if !parseFlags(fs, args, stderr) {
		return translate.Options{}, false
	}
	opts, err := tf.options()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return translate.Options{}, false
	}
	return opts, true
}
