package fakeservices

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egress-xds/egress-xds/internal/testpki"
)

// Ports of the fake services in the compose stack: the defaults of
// cmd/fakeservices, and the endpoints the compose intents name.
const (
	TLSPort       = 8443
	MTLSPort      = 9443
	HTTPPort      = 8080
	FlakyPort     = 8081
	ControlPort   = 9000
	DBPrimaryPort = 15432
	DBReplicaPort = 15433
)

// Service names, as Reply.Service and the names of the database instances.
const (
	ServiceTLS   = "tls"
	ServiceMTLS  = "mtls"
	ServiceHTTP  = "http"
	ServiceFlaky = "flaky"
	DBPrimary    = "primary"
	DBReplica    = "replica"
)

// MaxDelay bounds the ?delay= of a request, so no test can hang a server.
const MaxDelay = 10 * time.Second

// Config says where each fake service listens; a service without an
// address does not run.
type Config struct {
	CA *CA
	// Names the TLS servers' certificate is valid for; DefaultNames if nil.
	Names                                           []string
	TLSAddr, MTLSAddr, HTTPAddr, FlakyAddr, Control string
	// DBAddrs maps database instance names to addresses.
	DBAddrs map[string]string
	Log     *slog.Logger
}

// PortsConfig listens on host (empty: every interface) at the given ports;
// 0 ports pick free ones.
func PortsConfig(ca *CA, host string, tlsPort, mtlsPort, httpPort, flakyPort, controlPort, primary, replica int) Config {
	a := func(p int) string { return net.JoinHostPort(host, strconv.Itoa(p)) }
	return Config{CA: ca, TLSAddr: a(tlsPort), MTLSAddr: a(mtlsPort), HTTPAddr: a(httpPort), FlakyAddr: a(flakyPort),
		Control: a(controlPort), DBAddrs: map[string]string{DBPrimary: a(primary), DBReplica: a(replica)}}
}

// DefaultConfig is the compose stack's: every interface, the default ports.
func DefaultConfig(ca *CA) Config {
	return PortsConfig(ca, "", TLSPort, MTLSPort, HTTPPort, FlakyPort, ControlPort, DBPrimaryPort, DBReplicaPort)
}

// LoopbackConfig listens on free ports of 127.0.0.1.
func LoopbackConfig(ca *CA) Config { return PortsConfig(ca, "127.0.0.1", 0, 0, 0, 0, 0, 0, 0) }

// Reply is what the HTTP services answer, so a test sees which service
// answered and how the request reached it.
type Reply struct {
	Service string `json:"service"`
	Host    string `json:"host"`
	Method  string `json:"method"`
	Path    string `json:"path"`
	TLS     bool   `json:"tls"`
	SNI     string `json:"sni,omitempty"`
	// Client is the common name of the client certificate, if any.
	Client  string `json:"client,omitempty"`
	Failing bool   `json:"failing,omitempty"`
	// Addr is the address the request came in on: which instance of a
	// service listening on several answered.
	Addr string `json:"addr,omitempty"`
}

// Services are running fake services.
type Services struct {
	CA                                  *CA
	TLS, MTLS, HTTP, Flaky, ControlAddr string
	DB                                  map[string]string // instance name -> address

	failing atomic.Bool
	log     *slog.Logger
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]struct{} // open database connections
	closed  bool
	done    chan struct{}
}

// Start listens on every address of cfg and serves until ctx is done; Wait
// returns once everything has stopped.
func Start(ctx context.Context, cfg Config) (*Services, error) {
	if cfg.CA == nil {
		return nil, errors.New("fakeservices: no CA")
	}
	names := cfg.Names
	if names == nil {
		names = DefaultNames
	}
	cert, err := cfg.CA.TLSCertificate(testpki.Leaf{CommonName: names[0], DNSNames: names, Server: true})
	if err != nil {
		return nil, err
	}
	s := &Services{CA: cfg.CA, DB: map[string]string{}, log: cfg.Log, conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var ls []net.Listener
	listen := func(addr string, out *string) net.Listener {
		if err != nil || addr == "" {
			return nil
		}
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err != nil {
			err = fmt.Errorf("fakeservices: %w", err)
			return nil
		}
		ls = append(ls, l)
		*out = l.Addr().String()
		return l
	}
	serverTLS := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	mutualTLS := serverTLS.Clone()
	mutualTLS.ClientAuth, mutualTLS.ClientCAs = tls.RequireAndVerifyClientCert, cfg.CA.Pool()

	type httpSrv struct {
		l net.Listener
		h http.Handler
	}
	var srvs []httpSrv
	if l := listen(cfg.TLSAddr, &s.TLS); l != nil {
		srvs = append(srvs, httpSrv{tls.NewListener(l, serverTLS), s.handler(ServiceTLS)})
	}
	if l := listen(cfg.MTLSAddr, &s.MTLS); l != nil {
		srvs = append(srvs, httpSrv{tls.NewListener(l, mutualTLS), s.handler(ServiceMTLS)})
	}
	if l := listen(cfg.HTTPAddr, &s.HTTP); l != nil {
		srvs = append(srvs, httpSrv{l, s.handler(ServiceHTTP)})
	}
	if l := listen(cfg.FlakyAddr, &s.Flaky); l != nil {
		srvs = append(srvs, httpSrv{l, s.handler(ServiceFlaky)})
	}
	if l := listen(cfg.Control, &s.ControlAddr); l != nil {
		srvs = append(srvs, httpSrv{l, s.control()})
	}
	dbNames := make([]string, 0, len(cfg.DBAddrs))
	for name := range cfg.DBAddrs {
		dbNames = append(dbNames, name)
	}
	sort.Strings(dbNames)
	echo := map[string]net.Listener{}
	for _, name := range dbNames {
		var addr string
		if l := listen(cfg.DBAddrs[name], &addr); l != nil {
			echo[name] = l
			s.DB[name] = addr
		}
	}
	if err != nil {
		for _, l := range ls {
			l.Close()
		}
		return nil, err
	}

	var servers []*http.Server
	for _, hs := range srvs {
		srv := &http.Server{Handler: hs.h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
		servers = append(servers, srv)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = srv.Serve(hs.l)
		}()
	}
	for name, l := range echo {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveEcho(l, name)
		}()
	}
	go func() {
		<-ctx.Done()
		for _, srv := range servers {
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if srv.Shutdown(sctx) != nil {
				srv.Close()
			}
			cancel()
		}
		for _, l := range echo {
			l.Close()
		}
		s.mu.Lock()
		s.closed = true
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
		close(s.done)
	}()
	s.log.Info("fake services listening", "tls", s.TLS, "mtls", s.MTLS, "http", s.HTTP, "flaky", s.Flaky,
		"control", s.ControlAddr, "db", s.DB, "names", names)
	return s, nil
}

// Wait blocks until the services have stopped.
func (s *Services) Wait() { <-s.done }

// SetFailing makes the flaky service answer 503 (true) or 200 (false).
func (s *Services) SetFailing(on bool) { s.failing.Store(on) }

// Failing reports whether the flaky service fails.
func (s *Services) Failing() bool { return s.failing.Load() }

// handler answers with a Reply. ?status=N sets the status code and
// ?delay=D (at most MaxDelay) holds the answer, for circuit breakers.
func (s *Services) handler(service string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep := Reply{Service: service, Host: r.Host, Method: r.Method, Path: r.URL.Path}
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			rep.Addr = a.String()
		}
		if r.TLS != nil {
			rep.TLS, rep.SNI = true, r.TLS.ServerName
			if len(r.TLS.PeerCertificates) > 0 {
				rep.Client = r.TLS.PeerCertificates[0].Subject.CommonName
			}
		}
		status := http.StatusOK
		if service == ServiceFlaky && s.failing.Load() {
			status, rep.Failing = http.StatusServiceUnavailable, true
		}
		if v, err := strconv.Atoi(r.URL.Query().Get("status")); err == nil && v >= 200 && v <= 599 {
			status = v
		}
		if d, err := time.ParseDuration(r.URL.Query().Get("delay")); err == nil && d > 0 {
			select {
			case <-time.After(min(d, MaxDelay)):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(rep)
	})
}

// control serves /healthz and /flaky (GET the state, POST ?failing=true or
// false to switch it), for tests and the compose healthcheck.
func (s *Services) control() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/flaky", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			on, err := strconv.ParseBool(r.URL.Query().Get("failing"))
			if err != nil {
				http.Error(w, "want ?failing=true or ?failing=false", http.StatusBadRequest)
				return
			}
			s.SetFailing(on)
			s.log.Info("flaky service switched", "failing", on)
		case http.MethodGet:
		default:
			http.Error(w, "GET or POST", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]bool{"failing": s.Failing()})
	})
	return mux
}

// serveEcho is a database that greets with "fake-db NAME" (so a test knows
// which instance it reached) and echoes what it reads.
func (s *Services) serveEcho(l net.Listener, name string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			if _, err := fmt.Fprintf(c, "fake-db %s\n", name); err != nil {
				return
			}
			_, _ = io.Copy(c, c)
		}()
	}
}
