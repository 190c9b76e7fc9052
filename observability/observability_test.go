// Package observability holds the Prometheus scrape configuration and the
// Grafana dashboard of egress-xds; this test keeps them parseable and their
// queries pointed at metrics that exist.
package observability_test

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/egress-xds/egress-xds/internal/metrics"
)

// ourMetrics lists every series name the control plane can expose: the
// fields of metrics.Metrics (histograms with _bucket, _sum and _count),
// and whatever the registry gathers (the Go and process collectors).
func ourMetrics(t *testing.T) map[string]bool {
	t.Helper()
	m := metrics.New()
	known := map[string]bool{}
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	histogram := reflect.TypeOf((*prometheus.Histogram)(nil)).Elem()
	v := reflect.ValueOf(m).Elem()
	for i := 0; i < v.NumField(); i++ {
		c, ok := v.Field(i).Interface().(prometheus.Collector)
		if !ok || v.Type().Field(i).Name == "Registry" {
			continue
		}
		isHist := v.Field(i).Type() == reflect.TypeOf(&prometheus.HistogramVec{}) || v.Field(i).Type().Implements(histogram) && v.Field(i).Type().Kind() == reflect.Interface
		ch := make(chan *prometheus.Desc, 8)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			match := fqName.FindStringSubmatch(d.String())
			if match == nil {
				t.Fatalf("cannot read the name of %s", d)
			}
			known[match[1]] = true
			if isHist {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					known[match[1]+s] = true
				}
			}
		}
	}
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		known[mf.GetName()] = true
	}
	for _, name := range []string{"egress_xds_convergence_seconds_bucket", "egress_xds_pushes_total", "egress_xds_connected_proxies"} {
		if !known[name] {
			t.Fatalf("the metric list misses %s: %v", name, known)
		}
	}
	return known
}

// envoyMetrics reads the documented list of Envoy metrics.
func envoyMetrics(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile("envoy-metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 0 && !strings.HasPrefix(f[0], "#") {
			out[f[0]] = true
		}
	}
	return out
}

var (
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promRange    = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promKeywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true,
		"group_right": true, "bool": true, "offset": true, "and": true, "or": true, "unless": true, "inf": true, "nan": true}
)

// metricNames returns the metric names a PromQL expression selects: the
// identifiers left once strings, label matchers, ranges and grouping
// clauses are removed, that are not functions, aggregations or keywords.
func metricNames(expr string) []string {
	e := promString.ReplaceAllString(expr, `""`)
	e = promMatchers.ReplaceAllString(e, " ")
	e = promRange.ReplaceAllString(e, " ")
	e = promGrouping.ReplaceAllString(e, " ")
	var out []string
	for _, loc := range promIdent.FindAllStringIndex(e, -1) {
		name := e[loc[0]:loc[1]]
		if loc[0] > 0 && (e[loc[0]-1] == '$' || e[loc[0]-1] == '.' || (e[loc[0]-1] >= '0' && e[loc[0]-1] <= '9')) {
			continue
		}
		rest := strings.TrimLeft(e[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") || promKeywords[strings.ToLower(name)] {
			continue
		}
		out = append(out, name)
	}
	return out
}

func TestMetricNames(t *testing.T) {
	got := metricNames(`histogram_quantile(0.99, sum by (group, le) (rate(egress_xds_convergence_seconds_bucket{group=~"$group"}[$__rate_interval]))) / on (a) b_total offset 5m`)
	if want := []string{"egress_xds_convergence_seconds_bucket", "b_total"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

type panel struct {
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

// Every query of the dashboard selects metrics that exist: ours, or Envoy's
// documented ones; every documented Envoy metric is used.
func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title      string  `json:"title"`
		UID        string  `json:"uid"`
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&dash); err != nil {
		t.Fatal(err)
	}
	if dash.Title == "" || dash.UID == "" {
		t.Fatal("dashboard without title or uid")
	}
	ours, envoy := ourMetrics(t), envoyMetrics(t)
	used := map[string]bool{}
	check := func(where, expr string) {
		names := metricNames(expr)
		if len(names) == 0 {
			t.Errorf("%s: %q selects no metric", where, expr)
		}
		for _, n := range names {
			used[n] = true
			if !ours[n] && !envoy[n] {
				t.Errorf("%s: %q: metric %s is neither ours nor in envoy-metrics.txt", where, expr, n)
			}
		}
	}
	var walk func([]panel)
	queries := 0
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				queries++
				check("panel "+p.Title, tg.Expr)
			}
		}
	}
	walk(dash.Panels)
	labelValues := regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*\w+\s*\)$`)
	for _, v := range dash.Templating.List {
		if v.Definition == "" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: unexpected query %q", v.Name, v.Definition)
			continue
		}
		check("variable "+v.Name, m[1])
	}
	if queries < 10 {
		t.Errorf("only %d queries", queries)
	}
	var unused []string
	for n := range envoy {
		if !used[n] {
			unused = append(unused, n)
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		t.Errorf("envoy-metrics.txt lists metrics the dashboard does not use: %v", unused)
	}
	for _, want := range []string{"egress_xds_connected_proxies", "egress_xds_pushes_total", "egress_xds_nacks_total",
		"egress_xds_convergence_seconds_bucket", "envoy_cluster_upstream_rq_total", "envoy_cluster_upstream_rq_time_bucket",
		"envoy_http_local_rate_limit_rate_limited", "envoy_listener_no_filter_chain_match"} {
		if !used[want] {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
}

// The scrape configuration parses, and finds the pods deploy/ runs by the
// labels and port names they have.
func TestPrometheusConfig(t *testing.T) {
	data, err := os.ReadFile("prometheus.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Global        map[string]any `json:"global"`
		ScrapeConfigs []struct {
			JobName        string `json:"job_name"`
			MetricsPath    string `json:"metrics_path"`
			RelabelConfigs []struct {
				SourceLabels []string `json:"source_labels"`
				Action       string   `json:"action"`
				Regex        string   `json:"regex"`
			} `json:"relabel_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	deploy, err := os.ReadFile("../deploy/xds-server.yaml")
	if err != nil {
		t.Fatal(err)
	}
	jobs := map[string]string{}
	for _, sc := range cfg.ScrapeConfigs {
		jobs[sc.JobName] = sc.MetricsPath
		if sc.JobName != "egress-xds" {
			continue
		}
		for _, rc := range sc.RelabelConfigs {
			if rc.Action != "keep" {
				continue
			}
			switch rc.SourceLabels[0] {
			case "__meta_kubernetes_pod_label_app_kubernetes_io_name":
				if !strings.Contains(string(deploy), "app.kubernetes.io/name: "+rc.Regex) {
					t.Errorf("no pod labelled %s in deploy/xds-server.yaml", rc.Regex)
				}
			case "__meta_kubernetes_pod_container_port_name":
				if !strings.Contains(string(deploy), "name: "+rc.Regex) {
					t.Errorf("no container port %s in deploy/xds-server.yaml", rc.Regex)
				}
			}
		}
	}
	if jobs["egress-xds"] != "/metrics" || jobs["egress-gateway"] != "/stats/prometheus" {
		t.Errorf("jobs: %v", jobs)
	}
}
