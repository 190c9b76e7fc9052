package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// parseFlags parses a command line and then applies the environment
// (applyEnv); false means the problem was printed and the command exits 2.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) bool {
	if err := fs.Parse(args); err != nil {
		return false
	}
	if err := applyEnv(fs); err != nil {
		fmt.Fprintln(stderr, err)
		return false
	}
	return true
}

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
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("%s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return body, nil
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
