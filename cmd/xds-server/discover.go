package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/discover"
)

// discoverCmd reads the access log of gateways in audit mode and proposes
// the intents that would let the same traffic through in enforce.
func discoverCmd(args []string, stdout, stderr io.Writer) int {
	c := newCmdLine("discover", stdout, stderr)
	current := c.String("config-dir", "", "folder (or file) of the current manifests: propose only what they lack, and widenings of their allow lists")
	out := c.String("out", "", "folder to write one manifest per proposed ConfigMap into (created); default: every manifest on stdout")
	namespace := c.String("namespace", discover.DefaultNamespace, "namespace of the proposed ConfigMaps")
	group := c.String("group", "", "gateway group of log lines that name none")
	threshold := c.Int("wildcard-threshold", 0, "propose *.domain once this many distinct names directly under one domain were seen (same group, port and protocol); 0: never, at least 2")
	cidrBits := c.Int("cidr-bits", discover.DefaultCIDRBits, "IPv4 sources: the addresses seen within one /N become the narrowest CIDR covering them (32: one per address)")
	cidr6Bits := c.Int("cidr6-bits", discover.DefaultCIDR6Bits, "IPv6 sources: likewise, within one /N")
	tlsPorts := c.String("tls-ports", joinPorts(discover.DefaultTLSPorts), "CONNECT ports proposed as TLS (comma-separated); CONNECT to any other port is proposed as TCP")
	maxDest := c.Int("max-destinations", discover.DefaultMaxDestinations, "destinations kept at most; lines of more are counted, not kept (memory stays bounded whatever the log)")
	var tf translateFlags
	tf.register(c.FlagSet)
	tf.keys.registerOffline(c.FlagSet)
	opts, code, ok := parseTranslateFlags(c, args, &tf)
	if !ok {
		return code
	}
	ports, err := parsePorts(*tlsPorts)
	switch {
	case err != nil:
		return c.misuse("--tls-ports: %v", err)
	case *threshold == 1 || *threshold < 0:
		return c.misuse("--wildcard-threshold %d: use 0 (never) or at least 2 (a wildcard for one name would admit names never seen)", *threshold)
	case *cidrBits < 8 || *cidrBits > 32:
		return c.misuse("--cidr-bits %d: between 8 and 32", *cidrBits)
	case *cidr6Bits < 16 || *cidr6Bits > 128:
		return c.misuse("--cidr6-bits %d: between 16 and 128", *cidr6Bits)
	case *maxDest < 1:
		return c.misuse("--max-destinations %d: at least 1", *maxDest)
	case *group != "" && !validGroupName(*group):
		return c.misuse("--group %q is not a gateway group name (letters, digits, '-', '_', '.')", *group)
	}
	ro := opts.ResolveOptions()
	col := discover.NewCollector(discover.Options{
		Group: *group, TrustDomain: ro.TrustDomain, TLSPorts: ports, CIDRBits: *cidrBits, CIDR6Bits: *cidr6Bits,
		WildcardThreshold: *threshold, Namespace: *namespace, MaxDestinations: *maxDest,
	})
	logs := c.args
	if len(logs) == 0 {
		logs = []string{"-"}
	}
	for _, p := range logs {
		if err := readLog(col, p); err != nil {
			fmt.Fprintf(stderr, "discover: %s: %v\n", p, err)
			return 1
		}
	}
	var cms []compile.ConfigMap
	if *current != "" {
		cur, _, diags := load(*current)
		for _, d := range diags {
			fmt.Fprintln(stderr, "current:", d.Error())
		}
		cms = cur
	}
	res := col.Propose(cms, ro)
	if err := writeProposals(res.Proposals, *out, stdout); err != nil {
		fmt.Fprintln(stderr, "discover:", err)
		return 1
	}
	for _, n := range res.Notes {
		fmt.Fprintln(stderr, "note:", n)
	}
	s := col.Stats
	widenings := 0
	for _, p := range res.Proposals {
		if p.Widening {
			widenings++
		}
	}
	fmt.Fprintf(stderr, "discover: %d line(s), %d audited (%d refused even in audit, %d unusable, %d from another trust domain, %d over --max-destinations); proposed: %d new ConfigMap(s), %d widening(s)\n",
		s.Lines, s.Audited, s.Refused, s.Unusable, s.OtherTrustDomain, s.OverLimit, len(res.Proposals)-widenings, widenings)
	if s.OutsideRules > 0 {
		fmt.Fprintf(stderr, "discover: %d line(s) of requests outside their destination's methods and paths: nothing is proposed for them; widen methods or paths by hand if they are needed\n", s.OutsideRules)
	}
	if s.SourcesNotKept > 0 {
		fmt.Fprintf(stderr, "discover: %d line(s) from sources beyond %d per destination were not kept: their allow lists are incomplete\n", s.SourcesNotKept, discover.DefaultMaxSources)
	}
	return 0
}

func readLog(col *discover.Collector, path string) error {
	if path == "-" {
		return col.Read(os.Stdin)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return col.Read(f)
}

// writeProposals writes each manifest to its file in dir, or all of them
// to w as one multi-document stream.
func writeProposals(ps []discover.Proposal, dir string, w io.Writer) error {
	if dir == "" {
		for i, p := range ps {
			if i > 0 {
				fmt.Fprintln(w, "---")
			}
			if _, err := w.Write(p.Manifest); err != nil {
				return err
			}
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, p := range ps {
		path := filepath.Join(dir, p.File)
		if err := os.WriteFile(path, p.Manifest, 0o644); err != nil {
			return err
		}
		fmt.Fprintln(w, path)
	}
	return nil
}

func parsePorts(s string) (map[uint32]bool, error) {
	out := map[uint32]bool{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		p, err := strconv.ParseUint(part, 10, 16)
		if err != nil || p == 0 {
			return nil, fmt.Errorf("%q is not a port", part)
		}
		out[uint32(p)] = true
	}
	return out, nil
}

func joinPorts(ps []uint32) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

func validGroupName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || i == len(s)-1 || (c != '-' && c != '_' && c != '.')) {
			return false
		}
	}
	return s != "" && len(s) <= 253
}
