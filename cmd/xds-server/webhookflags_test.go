package main

import (
	"strings"
	"testing"
)

func TestWebhookFlags(t *testing.T) {
	for _, tc := range []struct {
		f          webhookFlags
		kubernetes bool
		wantErr    string // "" for valid
	}{
		{webhookFlags{}, false, ""},
		{webhookFlags{}, true, ""},
		{webhookFlags{address: ":9443", cert: "c", key: "k"}, true, ""},
		{webhookFlags{address: ":9443", cert: "c", key: "k"}, false, "needs --kubernetes"},
		{webhookFlags{address: ":9443", cert: "c"}, true, "needs --webhook-tls-cert and --webhook-tls-key"},
		{webhookFlags{address: ":9443"}, true, "needs --webhook-tls-cert and --webhook-tls-key"},
		{webhookFlags{cert: "c", key: "k"}, true, "need --webhook-address"},
	} {
		err := tc.f.check(tc.kubernetes)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%+v kubernetes=%v: %v", tc.f, tc.kubernetes, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%+v kubernetes=%v: got %v, want %q", tc.f, tc.kubernetes, err, tc.wantErr)
		}
	}
	if (&webhookFlags{}).config() != nil {
		t.Error("no flags: want the webhook off")
	}
	if c := (&webhookFlags{address: ":9443", cert: "c", key: "k"}).config(); c == nil || c.Address != ":9443" || c.CertFile != "c" || c.KeyFile != "k" {
		t.Errorf("config %+v", c)
	}
}

// serve refuses the webhook without the Kubernetes source, from the
// environment too, before starting anything.
func TestServeWebhookNeedsKubernetes(t *testing.T) {
	t.Setenv("EGRESS_XDS_WEBHOOK_ADDRESS", "127.0.0.1:0")
	code, _, errOut := runCmd("serve", "--config-dir", t.TempDir(), "--webhook-tls-cert", "c", "--webhook-tls-key", "k")
	if code != 2 || !strings.Contains(errOut, "--webhook-address needs --kubernetes") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}
