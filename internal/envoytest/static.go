package envoytest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/egress-xds/egress-xds/internal/testpki"
	"github.com/egress-xds/egress-xds/internal/translate"
)

// Node is the Envoy node a static bootstrap is for.
type Node struct{ ID, Cluster string }

// Static renders what a group is served as one static bootstrap that
// `envoy --mode validate` builds in full, so that Envoy judges every byte
// a proxy would get over ADS:
//   - listeners and clusters become static_resources;
//   - each RDS reference becomes its route configuration inline (Envoy
//     never fetches RDS in validate mode, so routes and their per-route
//     filter configs are only built inline);
//   - EDS clusters become STATIC with their ClusterLoadAssignment as
//     load_assignment (the endpoints are what intents decide; the EDS
//     config source is the constant ADS one);
//   - SDS references lose their ADS config source and name static
//     secrets, so certificates and keys are loaded and checked;
//   - files the proxies read (the system CA bundle, mesh certificates) are
//     replaced by stand-ins in dir: a test CA (*.crt), a certificate and
//     key it issued (tls.crt, tls.key), dir itself for watched folders.
//
// A reference to a route configuration or endpoint set the resources do
// not hold, or any ADS reference left, is an error: what Envoy would wait
// for forever is not silently dropped.
func Static(res *translate.Resources, node Node, dir string) (string, error) {
	files, err := standIns(dir)
	if err != nil {
		return "", err
	}
	routes := map[string]any{}
	for _, r := range res.Routes {
		if routes[r.Name], err = tree(r); err != nil {
			return "", err
		}
	}
	endpoints := map[string]any{}
	for _, e := range res.Endpoints {
		if endpoints[e.ClusterName], err = tree(e); err != nil {
			return "", err
		}
	}
	var listeners, clusters, secrets []any
	for _, l := range res.Listeners {
		v, err := tree(l)
		if err != nil {
			return "", err
		}
		listeners = append(listeners, v)
	}
	for _, c := range res.Clusters {
		v, err := tree(c)
		if err != nil {
			return "", err
		}
		if m := v.(map[string]any); m["type"] == "EDS" {
			cla, ok := endpoints[c.Name]
			if !ok {
				return "", fmt.Errorf("EDS cluster %q has no ClusterLoadAssignment in the resources", c.Name)
			}
			delete(m, "eds_cluster_config")
			m["type"] = "STATIC"
			m["load_assignment"] = cla
		}
		clusters = append(clusters, v)
	}
	for _, s := range res.Secrets {
		v, err := tree(s)
		if err != nil {
			return "", err
		}
		secrets = append(secrets, v)
	}
	boot := map[string]any{
		"node": map[string]any{"id": node.ID, "cluster": node.Cluster},
		"static_resources": map[string]any{
			"listeners": listeners, "clusters": clusters, "secrets": secrets,
		},
	}
	var errs []error
	walk(boot, "", func(m map[string]any, at string) {
		if rds, ok := m["rds"].(map[string]any); ok {
			name, _ := rds["route_config_name"].(string)
			rc, ok := routes[name]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: RDS route configuration %q is not in the resources", at, name))
				return
			}
			delete(m, "rds")
			m["route_config"] = rc
		}
		if sc, ok := m["sds_config"].(map[string]any); ok && sc["ads"] != nil {
			delete(m, "sds_config")
		}
		if _, ok := m["ads"]; ok {
			errs = append(errs, fmt.Errorf("%s: an ADS reference the static bootstrap cannot hold", at))
		}
		if f, ok := m["filename"].(string); ok {
			m["filename"] = files.file(f)
		}
		if wd, ok := m["watched_directory"].(map[string]any); ok {
			wd["path"] = files.dir
		}
	})
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	out, err := json.MarshalIndent(boot, "", " ")
	return string(out), err
}

// tree is m as protojson (proto field names, typed configs expanded), as
// generic JSON values; numbers stay exact.
func tree(m proto.Message) (any, error) {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	err = d.Decode(&v)
	return v, err
}

// walk calls f on every object of v, parents first, with its path; f may
// replace the object's members.
func walk(v any, at string, f func(m map[string]any, at string)) {
	switch x := v.(type) {
	case map[string]any:
		f(x, at)
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			walk(x[k], at+"."+k, f)
		}
	case []any:
		for i, e := range x {
			walk(e, fmt.Sprintf("%s[%d]", at, i), f)
		}
	}
}

// standInFiles are the files a static bootstrap points at instead of the
// proxies' own.
type standInFiles struct {
	dir, ca, cert, key string
}

func standIns(dir string) (*standInFiles, error) {
	ca, err := testpki.NewCA("envoytest CA", 24*time.Hour)
	if err != nil {
		return nil, err
	}
	cert, key, err := ca.Issue(testpki.Leaf{CommonName: "envoytest", DNSNames: []string{"envoytest.example.com"},
		URIs: []string{"spiffe://cluster.local/ns/envoytest/sa/envoytest"}, Server: true, Client: true})
	if err != nil {
		return nil, err
	}
	s := &standInFiles{dir: dir, ca: filepath.Join(dir, "ca.crt"), cert: filepath.Join(dir, "tls.crt"), key: filepath.Join(dir, "tls.key")}
	for p, b := range map[string][]byte{s.ca: ca.CertPEM, s.cert: cert, s.key: key} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// file is the stand-in for a file a proxy reads: a key, the certificate
// that goes with it, or else a CA bundle.
func (s *standInFiles) file(name string) string {
	base := path.Base(name)
	switch {
	case strings.HasSuffix(base, ".key"):
		return s.key
	case base == "tls.crt":
		return s.cert
	}
	return s.ca
}
