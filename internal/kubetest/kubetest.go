// Package kubetest runs a real Kubernetes API server for tests: etcd and
// kube-apiserver, as child processes listening on 127.0.0.1 only, with a
// generated CA, serving certificate, service-account key and static
// bearer tokens (an administrator in system:masters, and the control
// plane's ServiceAccount identity, which only RBAC grants rights to).
//
// The binaries come from the environment, as tools/kube/build.sh builds
// them and .ci/run exports them:
//
//	EGRESS_XDS_KUBE_APISERVER  path of kube-apiserver
//	EGRESS_XDS_ETCD            path of etcd
//
// or KUBEBUILDER_ASSETS, a folder holding both (controller-runtime's
// envtest convention). Without them, tests that need a cluster are
// skipped with a message saying how to get them.
package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/egress-xds/egress-xds/internal/envoytest"
	"github.com/egress-xds/egress-xds/internal/testpki"
)

// Environment variables naming the binaries.
const (
	EnvAPIServer = "EGRESS_XDS_KUBE_APISERVER"
	EnvEtcd      = "EGRESS_XDS_ETCD"
	EnvAssets    = "KUBEBUILDER_ASSETS"
)

// ServiceAccount is the identity the control plane runs as in deploy/:
// ServiceAccount xds-server in namespace egress-xds. The cluster's
// ServiceAccountToken authenticates as it, with its groups, and has no
// rights until RBAC grants them.
const (
	ServiceAccountNamespace = "egress-xds"
	ServiceAccountName      = "xds-server"
	// RestrictedUser is a third identity, with no group but
	// system:authenticated, for tests of narrower RBAC than deploy/'s.
	RestrictedUser = "egress-xds-restricted"
)

// ErrNoBinaries: the environment names no kube-apiserver or etcd.
var ErrNoBinaries = errors.New("no kube-apiserver/etcd binaries")

// Binaries returns the paths of kube-apiserver and etcd, or why they are
// not available: ErrNoBinaries when the environment names none, another
// error when it names files that are not executables.
func Binaries() (apiserver, etcd string, err error) {
	apiserver, etcd = os.Getenv(EnvAPIServer), os.Getenv(EnvEtcd)
	if dir := os.Getenv(EnvAssets); dir != "" {
		if apiserver == "" {
			apiserver = filepath.Join(dir, "kube-apiserver")
		}
		if etcd == "" {
			etcd = filepath.Join(dir, "etcd")
		}
	}
	if apiserver == "" || etcd == "" {
		return "", "", fmt.Errorf("%w: set %s and %s (or %s); "+
			"tools/kube/build.sh builds them, and .ci/run does it before the tests", ErrNoBinaries, EnvAPIServer, EnvEtcd, EnvAssets)
	}
	for _, p := range []string{apiserver, etcd} {
		if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return "", "", fmt.Errorf("kube test binary %s is not an executable file (from %s/%s/%s)", p, EnvAPIServer, EnvEtcd, EnvAssets)
		}
	}
	return apiserver, etcd, nil
}

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	dir                 string
	apiserverBin        string
	etcdBin             string
	etcdURL             string
	apiPort             int
	caPEM               []byte
	adminToken, saToken string
	restrictedToken     string

	mu        sync.Mutex
	etcd      *process
	apiserver *process
}

type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  *os.File
}

var (
	sharedMu  sync.Mutex
	shared    *Cluster
	sharedErr error // a failed start is not tried again by every test
)

// Shared returns the package's cluster, starting it at the first call, or
// skips the test when the environment names no binaries (and fails it
// when it names binaries that do not exist). Tests sharing it use their
// own namespaces. Call StopShared from TestMain after the tests.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	apiserver, etcd, err := Binaries()
	if errors.Is(err, ErrNoBinaries) {
		t.Skip("skipping the real API server test: " + err.Error())
	}
	if err != nil {
		t.Fatal(err) // named but broken: a setup error, not a reason to skip
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil {
		return shared
	}
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	c, err := Start(apiserver, etcd)
	if err != nil {
		sharedErr = err
		t.Fatal(err)
	}
	shared = c
	return c
}

// StopShared stops the package's cluster, if started.
func StopShared() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil {
		shared.Stop()
		shared = nil
	}
}

// Start runs etcd and kube-apiserver in a new temporary folder and waits
// until the API server is ready (at most 90s). Stop removes everything.
func Start(apiserverBin, etcdBin string) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "egress-xds-kube-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, apiserverBin: apiserverBin, etcdBin: etcdBin,
		adminToken: randomToken(), saToken: randomToken(), restrictedToken: randomToken()}
	if err := c.writeCredentials(); err != nil {
		c.Stop()
		return nil, err
	}
	if err := c.startEtcd(); err != nil {
		c.Stop()
		return nil, err
	}
	if c.apiPort, err = freePort(); err != nil {
		c.Stop()
		return nil, err
	}
	if err := c.StartAPIServer(); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// URL is the API server's address.
func (c *Cluster) URL() string { return "https://127.0.0.1:" + strconv.Itoa(c.apiPort) }

// Admin is a client configuration with every right (system:masters).
func (c *Cluster) Admin() *rest.Config { return c.config(c.adminToken) }

// ServiceAccount is a client configuration authenticated as the control
// plane's ServiceAccount, with only the rights RBAC grants it.
func (c *Cluster) ServiceAccount() *rest.Config { return c.config(c.saToken) }

// Restricted is a client configuration authenticated as RestrictedUser.
func (c *Cluster) Restricted() *rest.Config { return c.config(c.restrictedToken) }

func (c *Cluster) config(token string) *rest.Config {
	return &rest.Config{
		Host:            c.URL(),
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.caPEM},
		QPS:             100, Burst: 200,
		Timeout: 30 * time.Second,
	}
}

// AdminClient returns a clientset with every right.
func (c *Cluster) AdminClient(t testing.TB) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.Admin())
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// Kubeconfig writes a kubeconfig file for cfg (from Admin or
// ServiceAccount) into a test temporary folder and returns its path.
func (c *Cluster) Kubeconfig(t testing.TB, cfg *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["test"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	kc.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// Stop kills both processes and removes the cluster's folder.
func (c *Cluster) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiserver != nil {
		c.apiserver.stop(10 * time.Second)
		c.apiserver = nil
	}
	if c.etcd != nil {
		c.etcd.stop(10 * time.Second)
		c.etcd = nil
	}
	_ = os.RemoveAll(c.dir)
}

// StopAPIServer stops kube-apiserver (SIGTERM, then SIGKILL after 5s: a
// graceful stop waits for open watches); etcd keeps running and keeps the
// data.
func (c *Cluster) StopAPIServer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiserver != nil {
		c.apiserver.stop(5 * time.Second)
		c.apiserver = nil
	}
}

// StartAPIServer starts kube-apiserver (again) on the same port, with the
// same credentials, and waits until it is ready.
func (c *Cluster) StartAPIServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiserver != nil {
		return errors.New("kube-apiserver is running")
	}
	args := []string{
		"--etcd-servers=" + c.etcdURL,
		"--etcd-prefix=/registry",
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.apiPort),
		"--cert-dir=" + filepath.Join(c.dir, "apiserver-certs"),
		"--tls-cert-file=" + filepath.Join(c.dir, "serving.crt"),
		"--tls-private-key-file=" + filepath.Join(c.dir, "serving.key"),
		"--token-auth-file=" + filepath.Join(c.dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--anonymous-auth=false",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + filepath.Join(c.dir, "sa.key"),
		"--service-account-signing-key-file=" + filepath.Join(c.dir, "sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--disable-admission-plugins=ServiceAccount",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--endpoint-reconciler-type=none",
		"--v=1",
	}
	p, err := startProcess(c.apiserverBin, args, filepath.Join(c.dir, "kube-apiserver.log"))
	if err != nil {
		return err
	}
	c.apiserver = p
	if err := c.waitReady(p, 90*time.Second); err != nil {
		p.stop(5 * time.Second)
		c.apiserver = nil
		return fmt.Errorf("kube-apiserver: %w\n%s", err, tail(filepath.Join(c.dir, "kube-apiserver.log"), 4000))
	}
	return nil
}

// waitReady polls /readyz with the administrator's token.
func (c *Cluster) waitReady(p *process, timeout time.Duration) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.caPEM)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("exited: %v", p.err)
		default:
		}
		req, _ := http.NewRequest("GET", c.URL()+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+c.adminToken)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/readyz %d: %s", resp.StatusCode, bytes.TrimSpace(body))
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %v: %v", timeout, last)
}

func (c *Cluster) startEtcd() error {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		clientPort, err1 := freePort()
		peerPort, err2 := freePort()
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		client := "http://127.0.0.1:" + strconv.Itoa(clientPort)
		peer := "http://127.0.0.1:" + strconv.Itoa(peerPort)
		data := filepath.Join(c.dir, "etcd-data")
		_ = os.RemoveAll(data)
		args := []string{
			"--name=default",
			"--data-dir=" + data,
			"--listen-client-urls=" + client,
			"--advertise-client-urls=" + client,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=default=" + peer,
			"--unsafe-no-fsync",
			"--log-level=warn",
		}
		p, err := startProcess(c.etcdBin, args, filepath.Join(c.dir, "etcd.log"))
		if err != nil {
			return err
		}
		if err := waitHealthy(p, client+"/health", 30*time.Second); err != nil {
			p.stop(5 * time.Second)
			lastErr = fmt.Errorf("etcd: %w\n%s", err, tail(filepath.Join(c.dir, "etcd.log"), 2000))
			continue
		}
		c.etcd, c.etcdURL = p, client
		return nil
	}
	return lastErr
}

func waitHealthy(p *process, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("exited: %v", p.err)
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not healthy after %v: %v", timeout, last)
}

// startProcess starts a child that gets SIGKILL should the test process
// die without cleaning up.
func startProcess(bin string, args []string, logPath string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// Pdeathsig fires when the thread that started the child exits: keep
	// this goroutine on its thread while starting (Go does not end
	// threads that are not locked).
	runtime.LockOSThread()
	err = cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), log: logf}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// stop sends SIGTERM, then SIGKILL after grace, and waits.
func (p *process) stop(grace time.Duration) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

func freePort() (int, error) {
	ports, err := envoytest.FreePorts(1)
	if err != nil {
		return 0, err
	}
	return int(ports[0]), nil
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// writeCredentials writes the CA and serving certificate, the
// service-account signing key and the static token file.
func (c *Cluster) writeCredentials() error {
	ca, err := testpki.NewCA("egress-xds-test-ca", 24*time.Hour)
	if err != nil {
		return err
	}
	srvCert, srvKey, err := ca.Issue(testpki.Leaf{CommonName: "kube-apiserver", Server: true,
		IPs: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"}})
	if err != nil {
		return err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	c.caPEM = ca.CertPEM
	saUser := "system:serviceaccount:" + ServiceAccountNamespace + ":" + ServiceAccountName
	tokens := fmt.Sprintf("%s,admin,admin-uid,\"system:masters\"\n%s,%s,sa-uid,\"system:serviceaccounts,system:serviceaccounts:%s\"\n%s,%s,restricted-uid\n",
		c.adminToken, c.saToken, saUser, ServiceAccountNamespace, c.restrictedToken, RestrictedUser)
	files := map[string][]byte{
		"ca.crt":      c.caPEM,
		"serving.crt": srvCert,
		"serving.key": srvKey,
		"sa.key":      pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}),
		"tokens.csv":  []byte(tokens),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(c.dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// WaitFor polls cond every 50ms until it returns true or ctx is done,
// returning cond's last error with ctx's.
func WaitFor(ctx context.Context, cond func() (bool, error)) error {
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
