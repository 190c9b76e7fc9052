package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/egress-xds/egress-xds/internal/admin"
)

// adminClient is how the commands that ask a running server (status,
// config, healthcheck) reach its admin endpoints.
type adminClient struct {
	addr    string
	timeout time.Duration
}

func (c *adminClient) register(fs *flag.FlagSet, timeout time.Duration) {
	fs.StringVar(&c.addr, "admin-address", "127.0.0.1:9090", "admin address of the server to ask")
	fs.DurationVar(&c.timeout, "timeout", timeout, "how long to wait for the answer")
}

// get returns the body of a 200 answer, or an error naming the endpoint and
// the status with the start of the body.
func (c *adminClient) get(path string) ([]byte, error) {
	client := &http.Client{Timeout: c.timeout}
	resp, err := client.Get("http://" + c.addr + path)
	if err != nil {
		return nil, fmt.Errorf("no answer from the admin endpoint at %s (%w): is xds-server running there? --admin-address names it", c.addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, &httpError{code: resp.StatusCode, msg: fmt.Sprintf("%s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))}
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return body, nil
}

// httpError is an answer other than 200.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

// groupsServed names the groups the server serves, for a message about a
// missing or unknown group: "; the server at ADDR serves: a, b".
func (c *adminClient) groupsServed() string {
	var v admin.ConfigView
	if err := c.getJSON("/debug/config", &v); err != nil {
		return ""
	}
	if len(v.Groups) == 0 {
		return fmt.Sprintf("; the server at %s serves no group yet", c.addr)
	}
	names := make([]string, len(v.Groups))
	for i, g := range v.Groups {
		names[i] = g.Group
		if g.Group == "" {
			names[i] = `""`
		}
	}
	return fmt.Sprintf("; the server at %s serves: %s", c.addr, strings.Join(names, ", "))
}

// getJSON decodes the JSON answer of an admin endpoint.
func (c *adminClient) getJSON(path string, v any) error {
	body, err := c.get(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
