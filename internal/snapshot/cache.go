package snapshot

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/translate"
)

// RoleMetadataKey is the node metadata field that makes a proxy a sidecar
// ("sidecar") or the rate limit service ("ratelimit"); without it a proxy
// is a gateway.
const RoleMetadataKey = "egress-xds.io/role"

// GroupOf is the snapshot key of a proxy (compile.Key): its node's
// cluster (envoy --service-cluster) names the gateway group, and its
// metadata the role.
func GroupOf(n *core.Node) string {
	role := translate.RoleGateway
	switch translate.Role(n.GetMetadata().GetFields()[RoleMetadataKey].GetStringValue()) {
	case translate.RoleSidecar:
		role = translate.RoleSidecar
	case translate.RoleRateLimit:
		// envoyproxy/ratelimit sends no node cluster: one snapshot serves
		// every rate limit service (compile.RateLimitKey).
		role = translate.RoleRateLimit
	}
	return compile.Key(role, n.GetCluster())
}

// Cache serves group snapshots to go-control-plane's xDS server, SotW and
// delta, implementing cachev3.Cache. Compared with go-control-plane's
// SnapshotCache it (1) keys snapshots by group, so all proxies of a group
// share one; (2) shares marshalled resources and response lists between
// streams; (3) does not re-send a type whose content version the proxy
// already has, even on a new stream (a reconnect or another replica);
// (4) does not answer a NACK with the version that was just rejected,
// which would make the proxy and the server loop.
type Cache struct {
	mu     sync.Mutex
	groups map[string]*groupState
	// current is each group's snapshot (group -> *GroupSnapshot), read
	// without the lock: every stream's response callback asks for it
	// while SetSnapshot holds the lock to answer a thousand watches.
	current sync.Map
	nextID  int64
	// onNewGroup is called, outside the lock, when a proxy of a group that
	// has no snapshot yet asks for configuration.
	onNewGroup func(group string)
	log        *slog.Logger
	// limitSteps and limitNames bound each group's history (maxSteps,
	// maxStepNames; smaller in tests).
	limitSteps, limitNames int
}

// groupState is what the cache holds for a group: its current snapshot
// alone (a replaced one is not kept: nothing needs its resources), the
// names recent changes touched, and the watches.
type groupState struct {
	snap *GroupSnapshot
	// steps are, per type, its recent changes, oldest first (history.go).
	steps map[string][]step
	// memo holds what changed since a version, per type and version, for
	// the current snapshot (reset when it is replaced).
	memo  map[string]*since
	sotw  watches[*sotwWatch]
	delta watches[*deltaWatch]
	// diffLists share with the codec the encoding of the current
	// snapshot's differences (TypeSnapshot.diff.changed), which every
	// delta stream holding the replaced snapshot is sent: encoded once,
	// not once per stream. Registered while the snapshot is current.
	diffLists []*sharedList[*discovery.Resource]
}

type sotwWatch struct {
	req *cachev3.Request
	sub cachev3.Subscription
	ch  chan cachev3.Response
}

type deltaWatch struct {
	req *cachev3.DeltaRequest
	sub cachev3.Subscription
	ch  chan cachev3.DeltaResponse
}

var _ cachev3.Cache = (*Cache)(nil)

// NewCache returns an empty cache. onNewGroup may be nil.
func NewCache(log *slog.Logger, onNewGroup func(group string)) *Cache {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Cache{groups: map[string]*groupState{}, onNewGroup: onNewGroup, log: log,
		limitSteps: maxSteps, limitNames: maxStepNames}
}

func (c *Cache) group(name string) (*groupState, bool) {
	st, ok := c.groups[name]
	if !ok {
		st = &groupState{steps: map[string][]step{}, sotw: watches[*sotwWatch]{}, delta: watches[*deltaWatch]{}}
		c.groups[name] = st
	}
	return st, !ok
}

// Groups lists the groups proxies have asked for or snapshots were set for.
func (c *Cache) Groups() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.groups))
	for g := range c.groups {
		out = append(out, g)
	}
	return out
}

// Prune forgets the groups that no proxy watches and keep does not name, so
// that proxies connecting with ever new cluster names cannot grow memory
// without bound. A pruned group is rebuilt when a proxy asks again.
func (c *Cache) Prune(keep map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, st := range c.groups {
		if !keep[name] && st.sotw.empty() && st.delta.empty() {
			if st.snap != nil {
				st.snap.release()
			}
			st.shareDiffs(nil)
			delete(c.groups, name)
			c.current.Delete(name)
		}
	}
}

// Snapshot returns the group's current snapshot, nil if none.
func (c *Cache) Snapshot(group string) *GroupSnapshot {
	if gs, ok := c.current.Load(group); ok {
		return gs.(*GroupSnapshot)
	}
	return nil
}

// SetSnapshot publishes a group's snapshot and answers the open watches
// whose proxies lack something in it. It returns how many responses were
// sent.
func (c *Cache) SetSnapshot(group string, gs *GroupSnapshot) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, _ := c.group(group)
	prev := st.snap
	if prev != nil {
		prev.release()
		gs.diffFrom(prev)
		for _, typ := range gs.TypeURLs() {
			st.record(typ, gs.Type(typ), c.limitSteps, c.limitNames)
		}
	}
	gs.publish()
	st.shareDiffs(gs)
	st.snap = gs
	c.current.Store(group, gs)
	st.memo = nil
	// Every open watch was held on the previous snapshot (CreateWatch and
	// this method decide under the lock, on st.snap): where its type did
	// not move, it has nothing to send now either, and is not looked at.
	// A push to a thousand streams then costs the watches of the types
	// that changed, not of all five.
	moved := func(typ string) bool { return prev == nil || prev.Type(typ).Version != gs.Type(typ).Version }
	sent := 0
	for _, typ := range st.sotw.types(moved) {
		m := st.sotw[typ]
		for _, id := range sortedIDs(m) {
			w := m[id]
			if resp := sotwResponse(gs, w.req, w.sub); resp != nil {
				c.deliverSotw(w, resp)
				delete(m, id)
				sent++
			}
		}
	}
	for _, typ := range st.delta.types(moved) {
		m := st.delta[typ]
		for _, id := range sortedIDs(m) {
			w := m[id]
			if resp := deltaResponse(gs, w.req, w.sub, false, st); resp != nil {
				c.deliverDelta(w, resp)
				delete(m, id)
				sent++
			}
		}
	}
	return sent
}

// shareDiffs registers the encodings of gs's differences with the codec
// (nil: none), and stops sharing those of the snapshot it replaces.
func (st *groupState) shareDiffs(gs *GroupSnapshot) {
	for _, l := range st.diffLists {
		unregisterList(l)
	}
	st.diffLists = st.diffLists[:0]
	if gs == nil {
		return
	}
	for _, typ := range gs.TypeURLs() {
		if d := gs.Type(typ).diff; d != nil && len(d.changed) > 0 {
			l := newSharedList(d.changed, nil)
			registerList(l)
			st.diffLists = append(st.diffLists, l)
		}
	}
}

// watches are a group's open watches of one protocol, by type URL and
// ID: a push looks at the watches of the types that moved alone, without
// touching the others (a thousand streams hold five watches each). An
// emptied type keeps its map, which the next watches refill.
type watches[W any] map[string]map[int64]W

func (ws watches[W]) add(typ string, id int64, w W) {
	m := ws[typ]
	if m == nil {
		m = map[int64]W{}
		ws[typ] = m
	}
	m[id] = w
}

func (ws watches[W]) remove(typ string, id int64) { delete(ws[typ], id) }

func (ws watches[W]) empty() bool {
	for _, m := range ws {
		if len(m) > 0 {
			return false
		}
	}
	return true
}

// types lists the type URLs with watches that keep holds, in Types order
// (others after, by name). A proxy's ADS stream sends responses in the
// order they are delivered, and Envoy must get a cluster before the
// endpoints it waits for (and a listener before its routes).
func (ws watches[W]) types(keep func(string) bool) []string {
	var out []string
	for typ, m := range ws {
		if len(m) > 0 && keep(typ) {
			out = append(out, typ)
		}
	}
	rank := func(typ string) int {
		if r := slices.Index(Types, typ); r >= 0 {
			return r
		}
		return len(Types)
	}
	slices.SortFunc(out, func(a, b string) int {
		if c := cmp.Compare(rank(a), rank(b)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return out
}

// sortedIDs are the IDs of m in order: watches are answered in the order
// they were created.
func sortedIDs[W any](m map[int64]W) []int64 {
	ids := make([]int64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// The server's response channels are buffered for one response per type
// and a watch answers once, so these sends do not block; never block
// under the lock regardless.
func (c *Cache) deliverSotw(w *sotwWatch, r cachev3.Response) {
	select {
	case w.ch <- r:
	default:
		c.log.Error("xDS response channel full; the proxy will get this version on its next request", "type", w.req.GetTypeUrl())
	}
}

func (c *Cache) deliverDelta(w *deltaWatch, r cachev3.DeltaResponse) {
	select {
	case w.ch <- r:
	default:
		c.log.Error("delta xDS response channel full; the proxy will get this version on its next request", "type", w.req.GetTypeUrl())
	}
}

// CreateWatch answers a SotW request at once when the proxy lacks the
// current version, or holds it until a new snapshot of its group.
func (c *Cache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, ch chan cachev3.Response) (func(), error) {
	group := GroupOf(req.GetNode())
	c.mu.Lock()
	st, isNew := c.group(group)
	if st.snap != nil {
		if resp := sotwResponse(st.snap, req, sub); resp != nil {
			c.deliverSotw(&sotwWatch{req: req, ch: ch}, resp)
			c.mu.Unlock()
			return func() {}, nil
		}
	}
	c.nextID++
	id := c.nextID
	typ := req.GetTypeUrl()
	st.sotw.add(typ, id, &sotwWatch{req: req, sub: sub, ch: ch})
	c.mu.Unlock()
	if isNew && c.onNewGroup != nil {
		c.onNewGroup(group)
	}
	return func() {
		c.mu.Lock()
		st.sotw.remove(typ, id)
		c.mu.Unlock()
	}, nil
}

// CreateDeltaWatch answers a delta request with the resources whose
// versions the proxy lacks, or holds it until a new snapshot.
func (c *Cache) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, ch chan cachev3.DeltaResponse) (func(), error) {
	group := GroupOf(req.GetNode())
	c.mu.Lock()
	st, isNew := c.group(group)
	if st.snap != nil {
		// The first request of a type on a stream is always answered, even
		// with nothing, so that a proxy never waits on initialization.
		first := req.GetResponseNonce() == ""
		if resp := deltaResponse(st.snap, req, sub, first, st); resp != nil {
			c.deliverDelta(&deltaWatch{req: req, ch: ch}, resp)
			c.mu.Unlock()
			return func() {}, nil
		}
	}
	c.nextID++
	id := c.nextID
	typ := req.GetTypeUrl()
	st.delta.add(typ, id, &deltaWatch{req: req, sub: sub, ch: ch})
	c.mu.Unlock()
	if isNew && c.onNewGroup != nil {
		c.onNewGroup(group)
	}
	return func() {
		c.mu.Lock()
		st.delta.remove(typ, id)
		c.mu.Unlock()
	}, nil
}

// Fetch is REST xDS, which gateways on ADS do not use.
func (c *Cache) Fetch(context.Context, *cachev3.Request) (cachev3.Response, error) {
	return nil, errFetch
}

type fetchError struct{}

func (fetchError) Error() string { return "REST xDS (fetch) is not served: use ADS over gRPC" }

var errFetch = fetchError{}

// sotwResponse decides whether a SotW request gets an answer now, and
// builds it. It returns nil to hold the watch.
func sotwResponse(gs *GroupSnapshot, req *cachev3.Request, sub cachev3.Subscription) cachev3.Response {
	typeURL := req.GetTypeUrl()
	ts := gs.Type(typeURL)
	returned := sub.ReturnedResources()
	if req.GetErrorDetail() != nil && sentVersion(returned) == ts.Version {
		// NACK of the current version: re-sending it would loop. Wait
		// for the next version.
		return nil
	}
	if req.GetVersionInfo() == ts.Version {
		if len(returned) == 0 {
			// A new stream from a proxy that already has this version of
			// the type (reconnect, or another replica): the version is a
			// hash of the group's whole type, so it has everything.
			return nil
		}
		missing := false
		if !sub.IsWildcard() {
			for name := range sub.SubscribedResources() {
				if _, known := returned[name]; !known {
					if _, exists := ts.Items[name]; exists {
						missing = true
						break
					}
				}
			}
		}
		if !missing {
			return nil
		}
	}
	resources := ts.all
	if !sub.IsWildcard() && !cachev3.ResourceRequiresFullStateInSotw(typeURL) {
		resources = subset(ts, sub.SubscribedResources())
	}
	var names map[string]string
	if sub.IsWildcard() {
		// The version, not every name: a thousand streams would otherwise
		// hold a million entries. A fresh map: the server owns it.
		names = map[string]string{"*": ts.Version}
	} else {
		names = make(map[string]string, len(resources))
		for n := range sub.SubscribedResources() {
			if _, ok := ts.Items[n]; ok {
				names[n] = ts.Version
			}
		}
	}
	return &sotwResp{req: req, version: ts.Version, resources: resources, returned: names}
}

// subset lists the subscribed resources that exist, in name order; the
// whole list when every resource is subscribed (the usual case).
func subset(ts *TypeSnapshot, subscribed map[string]struct{}) []*anypb.Any {
	n := 0
	for name := range subscribed {
		if _, ok := ts.Items[name]; ok {
			n++
		}
	}
	if n == len(ts.Names) {
		return ts.all
	}
	out := make([]*anypb.Any, 0, n)
	for _, name := range ts.Names {
		if _, ok := subscribed[name]; ok {
			out = append(out, ts.Items[name].any)
		}
	}
	return out
}

// sentVersion is the SotW version last sent on the stream for the type.
func sentVersion(returned map[string]string) string {
	for _, v := range returned {
		return v
	}
	return ""
}

// deltaResponse lists the resources the proxy lacks or holds outdated, and
// those it holds that are gone. It returns nil to hold the watch, unless
// always is set.
func deltaResponse(gs *GroupSnapshot, req *cachev3.DeltaRequest, sub cachev3.Subscription, always bool, st *groupState) cachev3.DeltaResponse {
	typeURL := req.GetTypeUrl()
	ts := gs.Type(typeURL)
	returned := sub.ReturnedResources()
	wildcard := sub.IsWildcard()
	// A stream that holds exactly what a snapshot we sent has of what it
	// subscribes (every resource for a wildcard stream, the names it asked
	// for otherwise: Envoy's endpoints and route configurations) is recorded
	// as that snapshot's version alone (versionMarker), not as a map of
	// every resource: a thousand streams would otherwise keep, and rebuild
	// at every push, a million entries. The group's history says what
	// changed since (history.go).
	if wildcard && len(returned) == 0 {
		// A stream that holds nothing (a new one): every resource, the
		// shared list. Names subscribed beside the wildcard add nothing.
		if len(ts.deltaAll) == 0 && !always {
			return nil
		}
		return &deltaResp{req: req, version: ts.Version, resources: ts.deltaAll, next: map[string]string{versionMarker: ts.Version}}
	}
	marker := returned[versionMarker]
	unchangedSub := len(req.GetResourceNamesSubscribe()) == 0 && len(req.GetResourceNamesUnsubscribe()) == 0
	if unchangedSub && marker != "" && len(returned) == 1 {
		// The two cases of every push, before the history is looked at
		// (it has a step from either version: sinceVersion would find it).
		switch {
		case marker == ts.Version:
			if !always {
				return nil
			}
			return &deltaResp{req: req, version: ts.Version, next: returned}
		case ts.diff != nil && ts.diff.from == marker && wildcard:
			// The common case after a change: the difference, computed
			// once for every stream of the group.
			return &deltaResp{req: req, version: ts.Version, resources: ts.diff.changed, removed: ts.diff.removed,
				next: map[string]string{versionMarker: ts.Version}}
		case ts.diff != nil && ts.diff.from == marker:
			// The same, of the names the stream subscribes.
			return subscribedDiff(req, ts, sub.SubscribedResources(), always)
		}
	}
	var basis *since
	if marker != "" {
		basis = st.sinceVersion(typeURL, marker)
		if basis == nil && wildcard {
			return lostBasis(req, marker)
		}
		// A stream of names is not answered when a change touches none
		// of them, so it may hold a version the history no longer keeps
		// without having been silent: it is sent every name it subscribes
		// again (and those gone as removed), which it can only take as
		// updates.
	}
	if wildcard && unchangedSub && basis != nil && len(returned) == 1 {
		// Some versions behind: the difference since, computed once for
		// every stream that holds the same version.
		return &deltaResp{req: req, version: ts.Version, resources: basis.resources, removed: basis.gone,
			next: map[string]string{versionMarker: ts.Version}}
	}
	// Names this request subscribes were not subscribed when the marker
	// was recorded, nor, when it subscribes the wildcard, anything the
	// stream did not subscribe then: the stream holds them only if
	// returned says so.
	var fresh map[string]bool
	if basis != nil {
		for _, n := range req.GetResourceNamesSubscribe() {
			if fresh == nil {
				fresh = map[string]bool{}
			}
			fresh[n] = true
		}
	}
	subscribed := sub.SubscribedResources()
	markerHolds := func(name string) bool {
		if basis == nil {
			return false
		}
		if wildcard && !fresh["*"] {
			return true
		}
		_, ok := subscribed[name]
		return ok && !fresh[name]
	}
	known := func(name string) (string, bool) {
		if v, ok := returned[name]; ok {
			return v, true
		}
		if markerHolds(name) {
			return basis.held(ts, name)
		}
		if marker != "" && basis == nil {
			// Lost (above): what it holds is unknown; a name it
			// subscribes that is gone is told removed.
			_, ok := subscribed[name]
			return "", ok
		}
		return "", false
	}
	var resources []*discovery.Resource
	var removed []string
	considered := map[string]bool{}
	consider := func(name string) {
		if considered[name] || name == versionMarker || name == "*" {
			return
		}
		considered[name] = true
		it, exists := ts.Items[name]
		v, isKnown := known(name)
		switch {
		case exists && v != it.Version:
			resources = append(resources, it.delta)
		case exists:
		case isKnown:
			removed = append(removed, name)
		}
	}
	if wildcard {
		for _, name := range ts.Names {
			consider(name)
		}
	}
	for name := range subscribed {
		consider(name)
	}
	// What the stream holds and is neither current nor subscribed: gone
	// from the snapshot (removed), or unsubscribed (forgotten, so that a
	// new subscription sends it again).
	held := func(name string) {
		if considered[name] || name == versionMarker {
			return
		}
		considered[name] = true
		if _, exists := ts.Items[name]; !exists {
			removed = append(removed, name)
		}
	}
	for name := range returned {
		held(name)
	}
	if basis != nil {
		for _, name := range basis.gone {
			if markerHolds(name) {
				held(name)
			}
		}
	}
	// The stream now holds this snapshot's version of every resource it
	// subscribes (all of them, for a wildcard stream), and nothing else:
	// what it lacked or held outdated is sent, what is gone removed, what
	// it no longer subscribes forgotten.
	next := map[string]string{versionMarker: ts.Version}
	if len(resources) == 0 && len(removed) == 0 && !always {
		return nil
	}
	if len(resources) == len(ts.deltaAll) && len(resources) > 0 && wildcard {
		resources = ts.deltaAll // same resources, same (name) order: share the list
	}
	return &deltaResp{req: req, version: ts.Version, resources: resources, removed: dedupeSorted(removed), next: next}
}

// subscribedDiff is the part of the snapshot's difference from the one it
// replaced that concerns a stream of names holding that one: nil when none
// does (the stream then still holds the replaced snapshot's version, which
// the history keeps).
func subscribedDiff(req *cachev3.DeltaRequest, ts *TypeSnapshot, subscribed map[string]struct{}, always bool) cachev3.DeltaResponse {
	var resources []*discovery.Resource
	var removed []string
	for _, r := range ts.diff.changed {
		if _, ok := subscribed[r.GetName()]; ok {
			resources = append(resources, r)
		}
	}
	for _, n := range ts.diff.removed {
		if _, ok := subscribed[n]; ok {
			removed = append(removed, n)
		}
	}
	if len(resources) == 0 && len(removed) == 0 && !always {
		return nil
	}
	return &deltaResp{req: req, version: ts.Version, resources: resources, removed: removed,
		next: map[string]string{versionMarker: ts.Version}}
}

// lostBasis ends the stream of a delta proxy that holds a version older
// than the group's history: what it holds is unknown, so no difference
// is exact. The proxy reconnects and says what it holds (Envoy sends
// initial_resource_versions), from which the difference is exact again.
// Only a wildcard stream that did not answer for maxSteps changes gets
// here (a stream of names is sent what it subscribes instead).
func lostBasis(req *cachev3.DeltaRequest, version string) cachev3.DeltaResponse {
	return &deltaResp{req: req, err: status.Errorf(codes.Unavailable,
		"%s: the version this stream holds (%s) is older than the server's history of changes: reconnect with initial_resource_versions", req.GetTypeUrl(), version)}
}

// versionMarker is the entry of the known-versions map the server keeps per
// delta stream (never sent to the proxy) that names the snapshot version
// the stream holds in full. No resource name is empty.
const versionMarker = ""

func dedupeSorted(ss []string) []string {
	sort.Strings(ss)
	return slices.Compact(ss)
}

// sotwResp is a SotW response; the resource list is shared with other
// streams and must not be modified, so each call returns a new message.
type sotwResp struct {
	req       *cachev3.Request
	version   string
	resources []*anypb.Any
	returned  map[string]string
}

func (r *sotwResp) GetDiscoveryResponse() (*discovery.DiscoveryResponse, error) {
	return &discovery.DiscoveryResponse{VersionInfo: r.version, Resources: r.resources, TypeUrl: r.req.GetTypeUrl()}, nil
}
func (r *sotwResp) GetRequest() *discovery.DiscoveryRequest { return r.req }
func (r *sotwResp) GetVersion() (string, error)             { return r.version, nil }
func (r *sotwResp) GetResponseVersion() string              { return r.version }
func (r *sotwResp) GetReturnedResources() map[string]string { return r.returned }
func (r *sotwResp) GetContext() context.Context             { return context.Background() }

type deltaResp struct {
	req       *cachev3.DeltaRequest
	version   string
	resources []*discovery.Resource
	removed   []string
	next      map[string]string
	// err, if set, ends the stream instead (go-control-plane's delta
	// server returns it from the stream's handler).
	err error
}

func (r *deltaResp) GetDeltaDiscoveryResponse() (*discovery.DeltaDiscoveryResponse, error) {
	if r.err != nil {
		return nil, r.err
	}
	return &discovery.DeltaDiscoveryResponse{
		SystemVersionInfo: r.version,
		Resources:         r.resources,
		RemovedResources:  r.removed,
		TypeUrl:           r.req.GetTypeUrl(),
	}, nil
}
func (r *deltaResp) GetDeltaRequest() *discovery.DeltaDiscoveryRequest { return r.req }
func (r *deltaResp) GetSystemVersion() (string, error)                 { return r.version, nil }
func (r *deltaResp) GetResponseVersion() string                        { return r.version }
func (r *deltaResp) GetNextVersionMap() map[string]string              { return r.next }
func (r *deltaResp) GetReturnedResources() map[string]string           { return r.next }
func (r *deltaResp) GetContext() context.Context                       { return context.Background() }
