package compile_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/snapshot"
	"github.com/egress-xds/egress-xds/internal/translate"
	"github.com/egress-xds/egress-xds/internal/watch"
)

// corpusFile is one file of the corpus: the translation goldens and the
// examples (FuzzCompile's seeds), each a ConfigMap set of its own.
type corpusFile struct {
	path    string
	cms     []corev1.ConfigMap
	secrets []corev1.Secret
}

func corpusFiles(t *testing.T) []corpusFile {
	t.Helper()
	files, _ := filepath.Glob("../translate/testdata/*/in.yaml")
	examples, _ := filepath.Glob("../../examples/*.yaml")
	var out []corpusFile
	for _, p := range append(files, examples...) {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		c, s, err := watch.ParseManifests(data)
		if err != nil {
			continue // a golden case of a broken manifest
		}
		out = append(out, corpusFile{path: p, cms: c, secrets: s})
	}
	return out
}

// corpus is every ConfigMap and Secret of the corpus files.
func corpus(t *testing.T) ([]compile.ConfigMap, []corev1.Secret) {
	t.Helper()
	var cms []compile.ConfigMap
	var secrets []corev1.Secret
	for _, f := range corpusFiles(t) {
		for i := range f.cms {
			cms = append(cms, compile.ConfigMap{ConfigMap: &f.cms[i]})
		}
		secrets = append(secrets, f.secrets...)
	}
	if len(cms) < 20 {
		t.Fatalf("corpus of %d ConfigMaps", len(cms))
	}
	return cms, secrets
}

// edits are changes of one ConfigMap's data an operator makes: a port,
// a host, a timeout, a protocol, an allow list.
var edits = [][2]string{
	{"443", "8443"}, {"8443", "443"}, {"number: 80", "number: 8080"}, {"example.com", "example.org"},
	{"5s", "7s"}, {"10s", "12s"}, {"protocol: TLS", "protocol: TCP"}, {"protocol: HTTP", "protocol: TLS"},
	{"10.0.0.0/8", "192.168.0.0/16"}, {"SIMPLE", "MUTUAL"}, {"DNS", "STATIC"}, {"ROUND_ROBIN", "RANDOM"},
	{"maxTokens: 100", "maxTokens: 5"}, {"mode: audit", "mode: enforce"}, {"mode: enforce", "mode: audit"},
}

// TestIncrementalEquivalence drives random edit sequences over the corpus
// (ConfigMaps added, removed, edited, replaced; Secrets changed; server
// options and the clock moved) and proves, at every step and for every
// snapshot key, that what a cached build gives (compile.GroupCached, then
// the group's snapshot.Encoder) is what a build from scratch gives
// (compile.Group, then snapshot.NewGroupSnapshot): the same problems, the
// same resources byte for byte (equal to proto.Marshal of the fresh
// translation), the same sources and versions.
func TestIncrementalEquivalence(t *testing.T) {
	pool, secretPool := corpus(t)
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 16))
			s := &sequence{t: t, rng: rng, pool: pool, secretPool: secretPool, store: compile.NewStore(), uncached: compile.NewStoreUncached(),
				caches: map[string]*translate.Cache{}, encoders: map[string]*snapshot.Encoder{},
				opts: translate.Options{ForwardProxyPort: 3128, PrivateKeysInline: true, SettingsNamespace: "egress-xds",
					Now: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), CertificateExpiryWarning: translate.DefaultCertificateExpiryWarning}}
			for i := 0; i < 8; i++ {
				s.add()
			}
			s.secrets = append(s.secrets, secretPool...)
			for step := 0; step < 80; step++ {
				if step%5 == 4 {
					// Every option moves in every sequence, with
					// fragments of the old value cached.
					s.option(step / 5)
				} else {
					s.mutate()
				}
				s.compare(step)
			}
		})
	}
}

type sequence struct {
	t          *testing.T
	rng        *rand.Rand
	pool       []compile.ConfigMap
	secretPool []corev1.Secret
	cms        []compile.ConfigMap
	secrets    []corev1.Secret
	opts       translate.Options
	store      *compile.Store
	uncached   *compile.Store // resolving from scratch, the reference for store's cached resolution
	caches     map[string]*translate.Cache
	encoders   map[string]*snapshot.Encoder
	log        []string
}

func (s *sequence) add() {
	cm := s.pool[s.rng.IntN(len(s.pool))]
	c := cm.ConfigMap.DeepCopy()
	if s.rng.IntN(2) == 0 {
		c.Name = fmt.Sprintf("%s-%d", c.Name, s.rng.IntN(1000))
	}
	s.cms = append(s.cms, compile.ConfigMap{ConfigMap: c})
	s.log = append(s.log, "add "+c.Namespace+"/"+c.Name)
}

func (s *sequence) mutate() {
	switch k := s.rng.IntN(13); {
	case k >= 10 && len(s.cms) > 0:
		s.reshape(k - 10)
	case k < 4 && len(s.cms) > 0: // edit one ConfigMap
		i := s.rng.IntN(len(s.cms))
		c := s.cms[i].ConfigMap.DeepCopy()
		e := edits[s.rng.IntN(len(edits))]
		for key, v := range c.Data {
			c.Data[key] = strings.Replace(v, e[0], e[1], 1+s.rng.IntN(3))
		}
		s.cms[i] = compile.ConfigMap{ConfigMap: c}
		s.log = append(s.log, fmt.Sprintf("edit %s/%s %q->%q", c.Namespace, c.Name, e[0], e[1]))
	case k < 5 && len(s.cms) > 0: // another ConfigMap's content under this name
		i := s.rng.IntN(len(s.cms))
		c := s.cms[i].ConfigMap.DeepCopy()
		c.Data = s.pool[s.rng.IntN(len(s.pool))].ConfigMap.DeepCopy().Data
		s.cms[i] = compile.ConfigMap{ConfigMap: c}
		s.log = append(s.log, "replace "+c.Namespace+"/"+c.Name)
	case k < 6 && len(s.cms) > 1:
		i := s.rng.IntN(len(s.cms))
		s.log = append(s.log, "remove "+s.cms[i].Namespace+"/"+s.cms[i].Name)
		s.cms = slices.Delete(s.cms, i, i+1)
	case k < 7:
		s.add()
	case k < 8: // a Secret changes or goes
		if len(s.secrets) == 0 {
			s.secrets = append(s.secrets, s.secretPool...)
			break
		}
		i := s.rng.IntN(len(s.secrets))
		if s.rng.IntN(2) == 0 {
			s.log = append(s.log, "secret removed "+s.secrets[i].Name)
			s.secrets = slices.Delete(slices.Clone(s.secrets), i, i+1)
		} else {
			o := s.secretPool[s.rng.IntN(len(s.secretPool))]
			c := s.secrets[i].DeepCopy()
			c.Data = o.DeepCopy().Data
			s.secrets = slices.Clone(s.secrets)
			s.secrets[i] = *c
			s.log = append(s.log, "secret data "+c.Name+" from "+o.Name)
		}
	default:
		s.option(s.rng.IntN(options))
	}
}

// reshape changes what the translation cache keeps by document: a
// ConfigMap's destinations all move to another ConfigMap (renamed), a
// ConfigMap gains a second document whose destinations sort among its
// first's (the ports of the documents are then sorted together), or
// nothing changes (every document is reused whole).
func (s *sequence) reshape(kind int) {
	i := s.rng.IntN(len(s.cms))
	c := s.cms[i].ConfigMap.DeepCopy()
	switch kind {
	case 0:
		c.Name += "-moved"
		s.log = append(s.log, "rename "+c.Namespace+"/"+c.Name)
	case 1:
		for _, v := range s.pool[s.rng.IntN(len(s.pool))].Data {
			c.Data["second.yaml"] = v
			break
		}
		s.log = append(s.log, "second document in "+c.Namespace+"/"+c.Name)
	default:
		s.log = append(s.log, "nothing")
		return
	}
	s.cms[i] = compile.ConfigMap{ConfigMap: c}
}

// options is how many kinds of option change option makes.
const options = 8

// option moves one server option, or the clock: every option shapes
// fragments, so a cache that missed one would serve stale resources.
func (s *sequence) option(kind int) {
	o := &s.opts
	switch kind % options {
	case 0:
		o.ForwardProxyPort = map[uint32]uint32{3128: 3129, 3129: 0, 0: 3128}[o.ForwardProxyPort]
	case 1:
		if o.PortMap == nil {
			o.PortMap = map[uint32]uint32{443: 8443, 80: 8080}
		} else {
			o.PortMap = nil
		}
	case 2:
		o.SystemCABundle = map[string]string{"": "/etc/ca.pem", "/etc/ca.pem": ""}[o.SystemCABundle]
	case 3:
		o.ListenerAddress = map[string]string{"": "127.0.0.1", "127.0.0.1": ""}[o.ListenerAddress]
	case 4:
		if o.DNSResolvers == nil {
			o.DNSResolvers = []netip.AddrPort{netip.MustParseAddrPort("10.0.0.53:53")}
		} else {
			o.DNSResolvers = nil
		}
	case 5:
		switch {
		case o.RateLimitService == nil:
			o.RateLimitService = &translate.RateLimitServiceOptions{Address: "ratelimit.egress-xds:8081", Timeout: time.Second}
		case o.RateLimitService.Timeout == time.Second:
			o.RateLimitService = &translate.RateLimitServiceOptions{Address: "ratelimit.egress-xds:8081", Timeout: 2 * time.Second, FailureModeDeny: true}
		default:
			o.RateLimitService = nil
		}
	case 6:
		o.PrivateKeysInline = !o.PrivateKeysInline
	default:
		o.Now = o.Now.Add(time.Duration(s.rng.IntN(400)) * 24 * time.Hour)
	}
	s.log = append(s.log, fmt.Sprintf("options %+v", *o))
}

func (s *sequence) compare(step int) {
	t := s.t
	t.Helper()
	intents, diags := s.store.Update(s.cms, s.opts.ResolveOptions())
	if want, wdiags := s.uncached.Update(s.cms, s.opts.ResolveOptions()); !reflect.DeepEqual(intents, want) || fmt.Sprint(diags) != fmt.Sprint(wdiags) {
		t.Fatalf("step %d: cached resolution differs, after:\n  %s\ncached: %v\nfresh:  %v", step, strings.Join(s.log, "\n  "), diags, wdiags)
	}
	secrets := compile.Secrets(s.secrets)
	keys := []string{compile.RateLimitKey}
	for _, g := range append(compile.Groups(intents), "egress-gateway") {
		keys = append(keys, g, compile.Key(translate.RoleSidecar, g))
	}
	for _, key := range keys {
		if s.caches[key] == nil {
			s.caches[key], s.encoders[key] = translate.NewCache(), snapshot.NewEncoder()
		}
		fresh, fdiags, ferr := compile.Group(intents, key, secrets, s.opts)
		cached, cdiags, cerr := compile.GroupCached(s.caches[key], intents, key, secrets, s.opts)
		where := fmt.Sprintf("step %d, key %s, after:\n  %s", step, key, strings.Join(s.log, "\n  "))
		if fmt.Sprint(fdiags) != fmt.Sprint(cdiags) || fmt.Sprint(ferr) != fmt.Sprint(cerr) {
			t.Fatalf("%s\nproblems differ:\nfresh:  %v %v\ncached: %v %v", where, fdiags, ferr, cdiags, cerr)
		}
		if ferr != nil {
			continue
		}
		if !reflect.DeepEqual(fresh.Sources, cached.Sources) || !reflect.DeepEqual(fresh.Certificates, cached.Certificates) || !fresh.RecheckAt.Equal(cached.RecheckAt) {
			t.Fatalf("%s\nsources or certificates differ", where)
		}
		fs, ferr := snapshot.NewGroupSnapshot(fresh)
		cs, cerr := s.encoders[key].NewGroupSnapshot(cached)
		if fmt.Sprint(ferr) != fmt.Sprint(cerr) {
			t.Fatalf("%s\nsnapshots: %v, cached: %v", where, ferr, cerr)
		}
		if ferr != nil {
			continue
		}
		byType := snapshot.ByType(fresh)
		for _, typ := range fs.TypeURLs() {
			f, c := fs.Type(typ), cs.Type(typ)
			if f.Version != c.Version || !slices.Equal(f.Names, c.Names) {
				t.Fatalf("%s\n%s: version %s, cached %s", where, typ, f.Version, c.Version)
			}
			for _, r := range byType[typ] {
				want, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
				if err != nil {
					t.Fatal(err)
				}
				name := cachev3.GetResourceName(r)
				fi, ci := f.Items[name], c.Items[name]
				if fi.Version != ci.Version || !bytes.Equal(fi.Bytes(), want) || !bytes.Equal(ci.Bytes(), want) {
					t.Fatalf("%s\n%s %s: versions %s and %s; fresh bytes equal proto.Marshal: %t, cached: %t", where, typ, name,
						fi.Version, ci.Version, bytes.Equal(fi.Bytes(), want), bytes.Equal(ci.Bytes(), want))
				}
			}
		}
	}
}

// TestIncrementalOptions moves every option, three times over, under each
// golden case and example on its own, with the fragments of the previous
// value cached: a cache key that missed an option shaping a fragment
// fails here.
func TestIncrementalOptions(t *testing.T) {
	for _, f := range corpusFiles(t) {
		c, secrets := f.cms, f.secrets
		t.Run(f.path, func(t *testing.T) {
			s := &sequence{t: t, rng: rand.New(rand.NewPCG(1, 2)), store: compile.NewStore(), uncached: compile.NewStoreUncached(), secrets: secrets,
				caches: map[string]*translate.Cache{}, encoders: map[string]*snapshot.Encoder{},
				opts: translate.Options{ForwardProxyPort: 3128, PrivateKeysInline: true, SettingsNamespace: "egress-xds",
					RateLimitService: &translate.RateLimitServiceOptions{Address: "ratelimit.egress-xds:8081", Timeout: time.Second},
					Now:              time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)}}
			for i := range c {
				s.cms = append(s.cms, compile.ConfigMap{ConfigMap: &c[i]})
			}
			s.compare(0)
			for k := 0; k < 3*options; k++ {
				s.option(k)
				s.compare(k + 1)
			}
		})
	}
}
