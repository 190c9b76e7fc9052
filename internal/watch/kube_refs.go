package watch

import (
	"go.yaml.in/yaml/v3"
)

// secretRefsDoc is the part of an intent document that names Secrets.
type secretRefsDoc struct {
	Destinations []struct {
		TLS *struct {
			ClientCertificate *struct {
				Secret string `yaml:"secret"`
			} `yaml:"clientCertificate"`
			CACertificates *struct {
				Secret string `yaml:"secret"`
			} `yaml:"caCertificates"`
		} `yaml:"tls"`
	} `yaml:"destinations"`
}

// referencedSecretNames returns the Secret names an intent document
// references, read leniently: unknown fields are skipped and a value of the
// wrong type loses only itself (yaml.v3 goes on after type errors), so a
// document that is invalid elsewhere still yields its references.
func referencedSecretNames(doc []byte) []string {
	var d secretRefsDoc
	_ = yaml.Unmarshal(doc, &d)
	var out []string
	for _, dest := range d.Destinations {
		if dest.TLS == nil {
			continue
		}
		if c := dest.TLS.ClientCertificate; c != nil && c.Secret != "" {
			out = append(out, c.Secret)
		}
		if c := dest.TLS.CACertificates; c != nil && c.Secret != "" {
			out = append(out, c.Secret)
		}
	}
	return out
}
