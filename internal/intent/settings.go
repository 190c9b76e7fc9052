package intent

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// Gateway group settings: how a group enforces its intents. They live in
// a settings ConfigMap, an intent ConfigMap (label egress-xds.io/intent)
// that also carries SettingsLabelKey, whose .yaml keys are settings
// documents. Settings switch what a shared gateway does for every tenant
// (audit opens its egress), so only ConfigMaps of one namespace, the
// settings namespace the server is told, are obeyed (see Resolve).

// SettingsLabelKey marks an intent ConfigMap whose documents are gateway
// group settings instead of destinations.
const SettingsLabelKey = "egress-xds.io/settings"

// Mode is how a gateway group treats what its intents do not admit.
type Mode string

const (
	// ModeEnforce refuses what is not declared or not allowed (default).
	ModeEnforce Mode = "enforce"
	// ModeAudit lets it through and logs it with "audit" in the access
	// log, so that intents can be discovered from real traffic.
	ModeAudit Mode = "audit"
)

// SettingsDocument is the content of one data key of a settings ConfigMap.
type SettingsDocument struct {
	Groups []GroupSettings `yaml:"groups"`
}

// GroupSettings are one gateway group's settings.
type GroupSettings struct {
	// Name is the gateway group (Envoy node.cluster).
	Name string `yaml:"name"`
	// Mode is required: a switch that opens egress is never implied.
	Mode Mode `yaml:"mode"`
}

// SettingsDoc is one validated settings document and where it came from.
type SettingsDoc struct {
	Origin Origin
	*SettingsDocument
}

// ParseSettingsConfigMap decodes and validates every key of a settings
// ConfigMap, as ParseConfigMapLines does for intents: strictly, every
// problem with its field path, the Intent nil on any error. Whether its
// namespace may set anything is decided by Resolve.
func ParseSettingsConfigMap(origin Origin, created time.Time, data map[string]string, keyLines map[string]int) (*Intent, Diagnostics) {
	origin.Key = ""
	if size := dataSize(data); size > MaxConfigMapBytes {
		return nil, Diagnostics{{Origin: origin, Severity: SeverityError,
			Message: fmt.Sprintf("data is %d bytes (keys and values), over the %d bytes (1 MiB) Kubernetes allows a ConfigMap: not parsed", size, MaxConfigMapBytes)}}
	}
	in := &Intent{Origin: origin, Created: created}
	r := &reporter{max: MaxDiagnosticsPerConfigMap}
	for _, k := range sortedKeys(data) {
		r.origin = origin
		r.origin.Key = k
		r.firstLine = keyLines[k]
		if !IsIntentKey(k) {
			r.warnf("", "ignored: settings keys end in .yaml or .yml")
			continue
		}
		errs := r.errs
		r.undecoded = nil
		var doc SettingsDocument
		if !decodeInto(r, []byte(data[k]), &doc, "groups") {
			continue
		}
		r.validating = true
		validateSettings(r, &doc)
		r.validating = false
		if r.errs == errs {
			in.Settings = append(in.Settings, SettingsDoc{Origin: r.origin, SettingsDocument: &doc})
		}
	}
	r.origin, r.firstLine = origin, 0
	if len(in.Settings) == 0 && r.errs == 0 {
		r.errorf("", "no settings document: put it under a data key ending in .yaml")
	}
	diags := r.result()
	diags.Sort()
	if r.errs > 0 {
		return nil, diags
	}
	return in, diags
}

// decodeInto decodes one YAML document into out (a pointer to a struct of
// tagged fields) with the checks of Decode; fields names what the
// top-level mapping holds, for the message when it is something else.
func decodeInto(r *reporter, data []byte, out any, fields string) bool {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		r.undecodedf("", "%s", r.syntaxError(err, data))
		return false
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		r.undecodedf("", "empty document")
		return false
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		r.undecodedf("", "must be a mapping with %s, got %s", fields, kindName(doc))
		return false
	}
	decodeNode(r, doc, reflect.ValueOf(out).Elem(), "")
	return true
}

func validateSettings(r *reporter, doc *SettingsDocument) {
	if len(doc.Groups) == 0 {
		r.errorf("groups", "at least one gateway group is required")
	}
	seen := map[string]int{}
	for i := range doc.Groups {
		g := &doc.Groups[i]
		p := fmt.Sprintf("groups[%d]", i)
		switch {
		case g.Name == "":
			r.errorf(p+".name", "is required")
		case !groupRE.MatchString(g.Name) || len(g.Name) > 253:
			r.errorf(p+".name", "%s is not a valid gateway group name (letters, digits, '-', '_', '.')", clip(g.Name))
		default:
			if j, dup := seen[g.Name]; dup {
				r.errorf(p+".name", "%q is already set by groups[%d]", g.Name, j)
			} else {
				seen[g.Name] = i
			}
		}
		switch g.Mode {
		case ModeEnforce, ModeAudit:
		case "":
			r.errorf(p+".mode", "is required: enforce or audit")
		default:
			r.errorf(p+".mode", "%s is not one of enforce, audit", clip(string(g.Mode)))
		}
	}
}

// GroupMode is a gateway group's mode and the settings that set it.
type GroupMode struct {
	Mode   Mode
	Origin Origin // the settings document; zero for the default
	Path   string // its field path, e.g. groups[0].mode
}

// Modes are the modes the accepted intents set, by gateway group; a group
// not in it enforces. Resolve guarantees one setting per group.
func Modes(intents []*Intent) map[string]GroupMode {
	out := map[string]GroupMode{}
	for _, in := range intents {
		for _, sd := range in.Settings {
			for i, g := range sd.Groups {
				out[g.Name] = GroupMode{Mode: g.Mode, Origin: sd.Origin, Path: fmt.Sprintf("groups[%d].mode", i)}
			}
		}
	}
	return out
}

// ModeOf is a gateway group's mode: enforce unless accepted settings say
// audit.
func ModeOf(intents []*Intent, group string) Mode {
	for _, in := range intents {
		for _, sd := range in.Settings {
			for _, g := range sd.Groups {
				if g.Name == group {
					return g.Mode
				}
			}
		}
	}
	return ModeEnforce
}

// AuditWarnings is a warning on every accepted setting of audit mode, for
// as long as it holds: audit opens a group's egress, which must never go
// unnoticed.
func AuditWarnings(intents []*Intent) Diagnostics {
	var out Diagnostics
	for _, in := range intents {
		for _, sd := range in.Settings {
			for i, g := range sd.Groups {
				if g.Mode == ModeAudit {
					out = append(out, auditWarning(sd.Origin, i, g.Name))
				}
			}
		}
	}
	return out
}

// IsAuditWarning reports whether d is the warning of a group in audit
// mode.
func IsAuditWarning(d Diagnostic) bool {
	return d.Severity == SeverityWarning && strings.HasPrefix(d.Message, "gateway group ") && strings.Contains(d.Message, auditWarningText)
}

const auditWarningText = " is in audit mode: "

func auditWarning(o Origin, i int, group string) Diagnostic {
	return Diagnostic{Origin: o, Path: fmt.Sprintf("groups[%d].mode", i), Severity: SeverityWarning,
		Message: fmt.Sprintf("gateway group %s"+auditWarningText+"what enforce would refuse (undeclared hosts, sources outside allow lists) is let through and logged with \"audit\"; run xds-server discover on its access log, review and apply the intents, then set mode: enforce", group)}
}

// settingsClaims are what a settings ConfigMap needs for itself: each
// group it sets, which no other settings may set too.
func settingsClaims(in *Intent) []claim {
	var out []claim
	for di := range in.Settings {
		sd := &in.Settings[di]
		doc := &Doc{Origin: sd.Origin}
		for i, g := range sd.Groups {
			out = append(out, claim{key: claimKey{kind: claimGroupSettings, name: g.Name}, groups: []string{g.Name},
				intent: in, doc: doc, dest: i, portAt: settingsClaim})
		}
	}
	return out
}

// settingsAuthority refuses settings from outside the settings namespace:
// in Kubernetes any tenant that may create a ConfigMap in its own
// namespace could otherwise switch a shared gateway group to audit.
func settingsAuthority(in *Intent, opts ResolveOptions) Diagnostics {
	if len(in.Settings) == 0 || (opts.SettingsNamespace != "" && in.Origin.Namespace == opts.SettingsNamespace) {
		return nil
	}
	msg := fmt.Sprintf("gateway group settings are obeyed only from namespace %q (--settings-namespace), and this ConfigMap is in %q: settings change what a shared gateway group lets through for every tenant; this ConfigMap is not served",
		opts.SettingsNamespace, in.Origin.Namespace)
	if opts.SettingsNamespace == "" {
		msg = "gateway group settings are not obeyed: the server has no settings namespace (--settings-namespace); this ConfigMap is not served"
	}
	return Diagnostics{{Origin: in.Origin, Severity: SeverityError, Message: msg}}
}

// IsSettingsLabel reports whether a ConfigMap's labels mark it as
// settings.
func IsSettingsLabel(labels map[string]string) bool {
	return labels[SettingsLabelKey] == "true"
}
