package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer ok.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }))
	defer down.Close()
	for url, want := range map[string]int{ok.URL: 0, down.URL: 1, "http://127.0.0.1:1/": 1} {
		if got := run([]string{"healthcheck", "--url", url}, io.Discard); got != want {
			t.Errorf("healthcheck %s: exit %d, want %d", url, got, want)
		}
	}
}

func TestBadFlags(t *testing.T) {
	if got := run([]string{"--no-such-flag"}, io.Discard); got != 2 {
		t.Fatalf("exit %d", got)
	}
}
