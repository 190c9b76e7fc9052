package main

import "testing"

func TestXDSTLSFlags(t *testing.T) {
	for _, tc := range []struct {
		f  xdsTLSFlags
		ok bool
	}{
		{xdsTLSFlags{}, true},
		{xdsTLSFlags{cert: "c", key: "k"}, true},
		{xdsTLSFlags{cert: "c", key: "k", clientCA: "ca", trustDomain: "example.org"}, true},
		{xdsTLSFlags{cert: "c"}, false},
		{xdsTLSFlags{key: "k"}, false},
		{xdsTLSFlags{clientCA: "ca", trustDomain: "example.org"}, false},
		{xdsTLSFlags{cert: "c", key: "k", clientCA: "ca"}, false},
		{xdsTLSFlags{cert: "c", key: "k", trustDomain: "example.org"}, false},
	} {
		if err := tc.f.check(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc.f, err)
		}
	}
	if (&xdsTLSFlags{}).options() != nil {
		t.Error("no flags: want plaintext")
	}
	if o := (&xdsTLSFlags{cert: "c", key: "k", clientCA: "ca", trustDomain: "td"}).options(); o == nil || o.ClientCAFile != "ca" || o.TrustDomain != "td" {
		t.Errorf("options %+v", o)
	}
}
