package translate

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
)

// Check is the last gate before resources reach Envoy: every resource
// passes ValidateAll(), names are unique per type, and every cluster, route
// configuration, endpoint set and secret a resource references is in the
// set. go-control-plane's Consistent() covers only EDS and RDS names; Envoy
// also rejects (or hangs warming on) missing clusters and SDS secrets, so
// those are checked here too. The typed configs inside resources were
// validated when the translator packed them; CheckDeep validates them again
// from the wire form, for tests.
func Check(r *Resources) error { return check(r, false, nil) }

// CheckDeep is Check plus ValidateAll on every typed config, unpacked from
// its Any.
func CheckDeep(r *Resources) error { return check(r, true, nil) }

// Check is Check, redoing only what changed since the last call: a
// resource, or a part of one (translate.Split), is recognised by identity,
// which the fragments of Translate keep while their inputs are unchanged,
// and which is never modified. What the last call's resources gave is
// kept, and nothing more.
func (c *Cache) Check(r *Resources) error {
	if c == nil {
		return Check(r)
	}
	return check(r, false, &c.checked)
}

// checkMemo is what the last checked resources gave, each list beside
// its resources (in their order, which an edit changes in few places).
type checkMemo struct {
	clusters  checkedList[*clusterv3.Cluster]
	listeners checkedList[*listenerv3.Listener]
	routes    checkedList[*routev3.RouteConfiguration]
	endpoints checkedList[*endpointv3.ClusterLoadAssignment]
	secrets   checkedList[*tlsv3.Secret]
	// names are every resource's, by kind, when the check passed (ok):
	// every reference then resolved, and those of unchanged resources
	// and parts still do while no name comes or goes.
	names map[string]map[string]bool
	ok    bool
}

type checkedList[T comparable] struct {
	items   []T
	checked []*checkedPart
	// failed counts the entries with problems, so that a list without
	// any is not walked for them.
	failed int
}

// checkedPart is what checking a resource or a part gave: its problems
// (its parts' too) and the names it references; for a resource split
// into parts (a listener's chains, a route configuration's virtual
// hosts), each part's, in the resource's order.
type checkedPart struct {
	err   error
	refs  []reference
	parts []*checkedPart
}

type reference struct{ kind, name string }

// checker checks resources and parts, and lists the references of those
// it checked again (fresh).
type checker struct {
	validate func(proto.Message) error
	fresh    [][]reference
}

func (c *checker) part(m proto.Message, refs func(proto.Message) ([]reference, error)) *checkedPart {
	p := &checkedPart{err: c.validate(m)}
	if refs != nil {
		var err error
		p.refs, err = refs(m)
		p.err = errors.Join(p.err, err)
		c.fresh = append(c.fresh, p.refs)
	}
	return p
}

// same returns, for each of now, what checking the same message in last
// gave, nil where there is none. Both lists are walked together: an edit
// changes, adds or drops a few entries, which a short look ahead steps
// over; the entries left over on both sides are then matched by identity.
func same[T comparable](last []T, lastChecked []*checkedPart, now []T) []*checkedPart {
	out := make([]*checkedPart, len(now))
	if len(lastChecked) != len(last) {
		return out
	}
	var looseNow, looseLast []int
	i, j := 0, 0
	for i < len(now) && j < len(last) {
		if now[i] == last[j] {
			out[i] = lastChecked[j]
			i, j = i+1, j+1
			continue
		}
		if k := ahead(last[j+1:], now[i]); k >= 0 { // dropped from last
			for d := 0; d <= k; d++ {
				looseLast = append(looseLast, j+d)
			}
			j += k + 1
			continue
		}
		if k := ahead(now[i+1:], last[j]); k >= 0 { // added to now
			for d := 0; d <= k; d++ {
				looseNow = append(looseNow, i+d)
			}
			i += k + 1
			continue
		}
		looseNow, looseLast = append(looseNow, i), append(looseLast, j)
		i, j = i+1, j+1
	}
	for ; i < len(now); i++ {
		looseNow = append(looseNow, i)
	}
	for ; j < len(last); j++ {
		looseLast = append(looseLast, j)
	}
	if len(looseNow) > 0 && len(looseLast) > 0 {
		at := make(map[T]int, len(looseLast))
		for _, j := range looseLast {
			at[last[j]] = j
		}
		for _, i := range looseNow {
			if j, ok := at[now[i]]; ok {
				out[i] = lastChecked[j]
			}
		}
	}
	return out
}

// ahead is the index of x among the first few of l, -1 if not there.
func ahead[T comparable](l []T, x T) int {
	const window = 4
	for k := 0; k < len(l) && k < window; k++ {
		if l[k] == x {
			return k
		}
	}
	return -1
}

// whole checks resources that are not split.
func whole[T interface {
	comparable
	proto.Message
}](c *checker, last checkedList[T], now []T, refs func(proto.Message) ([]reference, error)) checkedList[T] {
	checked := same(last.items, last.checked, now)
	failed := 0
	for i, m := range now {
		switch {
		case checked[i] == nil:
			checked[i] = c.part(m, refs)
			if checked[i].err != nil {
				failed++
			}
		case last.failed > 0 && checked[i].err != nil:
			failed++
		}
	}
	return checkedList[T]{items: now, checked: checked, failed: failed}
}

// split checks resources as their other fields (header) and their parts,
// each of which ValidateAll checks alone; a changed resource of the same
// name as one checked last time reuses what its unchanged parts gave.
func split[T interface {
	comparable
	proto.Message
}, P interface {
	comparable
	proto.Message
}](c *checker, last checkedList[T], now []T, name func(T) string, parts func(T) []P, refs func(proto.Message) ([]reference, error)) checkedList[T] {
	checked := same(last.items, last.checked, now)
	var byName map[string]int
	failed := 0
	for i, m := range now {
		if checked[i] != nil {
			if last.failed > 0 && checked[i].err != nil {
				failed++
			}
			continue
		}
		if byName == nil {
			byName = make(map[string]int, len(last.items))
			for j, l := range last.items {
				byName[name(l)] = j
			}
		}
		var lastParts []P
		var lastChecked []*checkedPart
		// Parts of a resource without problems have none.
		lastFailed := false
		if j, ok := byName[name(m)]; ok && j < len(last.checked) {
			lastParts, lastChecked, lastFailed = parts(last.items[j]), last.checked[j].parts, last.checked[j].err != nil
		}
		ps := parts(m)
		p := &checkedPart{parts: same(lastParts, lastChecked, ps)}
		errs := []error{c.validate(header(m))}
		for k, part := range ps {
			kept := p.parts[k] != nil
			if !kept {
				p.parts[k] = c.part(part, refs)
			}
			if err := p.parts[k].err; (!kept || lastFailed) && err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", partName(part), err))
			}
		}
		p.err = errors.Join(errs...)
		if p.err != nil {
			failed++
		}
		checked[i] = p
	}
	return checkedList[T]{items: now, checked: checked, failed: failed}
}

func check(r *Resources, deep bool, memo *checkMemo) error {
	validate := func(m proto.Message) error { return m.(validator).ValidateAll() }
	if deep {
		validate = DeepValidate
	}
	var last, now checkMemo
	if memo != nil {
		last = *memo
	}
	// Validation is the costly part; clusters are checked on a second
	// goroutine while the rest is checked here.
	cc, oc := &checker{validate: validate}, &checker{validate: validate}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		now.clusters = whole(cc, last.clusters, r.Clusters, clusterReferences)
	}()
	now.listeners = split(oc, last.listeners, r.Listeners, (*listenerv3.Listener).GetName, (*listenerv3.Listener).GetFilterChains, chainReferences)
	now.routes = split(oc, last.routes, r.Routes, (*routev3.RouteConfiguration).GetName, (*routev3.RouteConfiguration).GetVirtualHosts, virtualHostReferences)
	now.endpoints = whole(oc, last.endpoints, r.Endpoints, nil)
	now.secrets = whole(oc, last.secrets, r.Secrets, nil)
	wg.Wait()

	// Names: those of the last check while none came or went.
	unchanged := last.ok && sameNames(last.listeners.items, r.Listeners, (*listenerv3.Listener).GetName) &&
		sameNames(last.routes.items, r.Routes, (*routev3.RouteConfiguration).GetName) &&
		sameNames(last.endpoints.items, r.Endpoints, (*endpointv3.ClusterLoadAssignment).GetClusterName) &&
		sameNames(last.secrets.items, r.Secrets, (*tlsv3.Secret).GetName) &&
		sameNames(last.clusters.items, r.Clusters, (*clusterv3.Cluster).GetName)
	names := last.names
	if !unchanged {
		names = map[string]map[string]bool{}
	}
	var errs []error
	errs = listErrs(errs, "listener", now.listeners, (*listenerv3.Listener).GetName, names, unchanged)
	errs = listErrs(errs, "route", now.routes, (*routev3.RouteConfiguration).GetName, names, unchanged)
	errs = listErrs(errs, "endpoints", now.endpoints, (*endpointv3.ClusterLoadAssignment).GetClusterName, names, unchanged)
	errs = listErrs(errs, "secret", now.secrets, (*tlsv3.Secret).GetName, names, unchanged)
	var clusterErrs []error
	for i := 0; i < len(r.Clusters) && now.clusters.failed > 0; i++ {
		if err := now.clusters.checked[i].err; err != nil {
			clusterErrs = append(clusterErrs, fmt.Errorf("cluster %q: %w", r.Clusters[i].Name, err))
		}
	}
	errs = listErrs(errs, "cluster", checkedList[*clusterv3.Cluster]{items: r.Clusters}, (*clusterv3.Cluster).GetName, names, unchanged)

	// References: with the same names as a check that passed, only
	// those of what was checked again can miss; otherwise all of them.
	missing := map[reference]bool{}
	lookup := func(rs []reference) {
		for _, ref := range rs {
			if !names[ref.kind][ref.name] {
				missing[ref] = true
			}
		}
	}
	if unchanged {
		for _, rs := range append(oc.fresh, cc.fresh...) {
			lookup(rs)
		}
	} else {
		for _, l := range [][]*checkedPart{now.listeners.checked, now.routes.checked, now.clusters.checked} {
			for _, p := range l {
				lookup(p.refs)
				for _, pp := range p.parts {
					lookup(pp.refs)
				}
			}
		}
	}
	for _, kind := range []string{"cluster", "route", "endpoints", "secret"} {
		var these []string
		for ref := range missing {
			if ref.kind == kind {
				these = append(these, ref.name)
			}
		}
		sort.Strings(these)
		for _, name := range these {
			errs = append(errs, fmt.Errorf("%s %q is referenced but not defined", kind, name))
		}
	}
	err := errors.Join(append(clusterErrs, errs...)...)
	if memo != nil {
		now.names, now.ok = names, err == nil
		*memo = now
	}
	return err
}

// listErrs appends the problems of a kind's resources, in their order:
// a name defined twice (unless the names are those of a check that
// passed), then the resource's own. It records the names when they are
// not the last check's.
func listErrs[T comparable](errs []error, kind string, l checkedList[T], name func(T) string, names map[string]map[string]bool, unchanged bool) []error {
	if unchanged && l.failed == 0 {
		return errs
	}
	if !unchanged && names[kind] == nil {
		names[kind] = make(map[string]bool, len(l.items))
	}
	for i, x := range l.items {
		n := name(x)
		if !unchanged {
			if names[kind][n] {
				errs = append(errs, fmt.Errorf("%s %q is defined twice", kind, n))
			}
			names[kind][n] = true
		}
		if i < len(l.checked) && l.checked[i].err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", kind, n, l.checked[i].err))
		}
	}
	return errs
}

// sameNames reports whether two lists name the same resources in the
// same order; the same resource has the same name.
func sameNames[T comparable](last, now []T, name func(T) string) bool {
	if len(last) != len(now) {
		return false
	}
	for i := range now {
		if now[i] != last[i] && name(now[i]) != name(last[i]) {
			return false
		}
	}
	return true
}

func partName(m proto.Message) string {
	switch p := m.(type) {
	case *listenerv3.FilterChain:
		return p.Name
	case *routev3.VirtualHost:
		return p.Name
	}
	return ""
}
