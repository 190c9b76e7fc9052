package main

import (
	"fmt"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"io"
	"os"

	corev1 "k8s.io/api/core/v1"

	"github.com/egress-xds/egress-xds/internal/compile"
	"github.com/egress-xds/egress-xds/internal/intent"
	"github.com/egress-xds/egress-xds/internal/watch"
)

// validate checks manifests the way the server would and prints every
// problem with its file, ConfigMap and field path, like istioctl analyze.
func validate(args []string, stdout, stderr io.Writer) int {
	c := newCmdLine("validate", stdout, stderr)
	var tf translateFlags
	tf.register(c.FlagSet)
	tf.keys.registerOffline(c.FlagSet)
	opts, code, ok := parseTranslateFlags(c, args, &tf)
	if !ok {
		return code
	}
	if len(c.args) == 0 {
		return c.misuse("no file or folder to check: name at least one, e.g. xds-server validate examples")
	}
	var cms []compile.ConfigMap
	var secrets []corev1.Secret
	var diags intent.Diagnostics
	for _, p := range c.args {
		c, s, d := load(p)
		cms, secrets, diags = append(cms, c...), append(secrets, s...), append(diags, d...)
	}
	intents, d := compile.NewStore().Update(cms, opts.ResolveOptions())
	diags = append(diags, d...)
	// Translate for every group an intent names, and for any other group
	// (documents without gateways), as the server would serve them.
	groups := append(compile.Groups(intents), "")
	destinations := map[string]bool{}
	for _, g := range groups {
		res, td, err := compile.Group(intents, g, compile.Secrets(secrets), opts)
		diags = append(diags, td...)
		if err != nil {
			diags = append(diags, compile.Diagnostic("", err.Error()))
			continue
		}
		for name := range res.Sources[resourcev3.ClusterType] {
			destinations[name] = true
		}
	}
	diags = diags.Dedupe()
	diags.Sort()
	diags = diags.Capped(intent.MaxDiagnosticsPerConfigMap)
	errs, warns := 0, 0
	for _, d := range diags {
		fmt.Fprintln(stdout, d.Error())
		e, w := d.Counts() // a summary counts the problems it stands for
		errs, warns = errs+e, warns+w
	}
	fmt.Fprintf(stdout, "%d error(s), %d warning(s); %d of %d intent ConfigMap(s) accepted, %d destination port(s)\n",
		errs, warns, len(intents), countSelected(cms), len(destinations))
	if errs > 0 {
		return 1
	}
	return 0
}

// load reads a file or a folder of manifests as the folder source would.
func load(path string) ([]compile.ConfigMap, []corev1.Secret, intent.Diagnostics) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, intent.Diagnostics{compile.Diagnostic(path, err.Error())}
	}
	if !st.IsDir() {
		return compile.FromFolder(watch.State{Files: []watch.FileState{watch.LoadFile(path)}})
	}
	state, err := watch.LoadDir(path)
	if err != nil {
		return nil, nil, intent.Diagnostics{compile.Diagnostic(path, err.Error())}
	}
	for i := range state.Files {
		state.Files[i].Path = path + "/" + state.Files[i].Path
	}
	return compile.FromFolder(state)
}

func countSelected(cms []compile.ConfigMap) int {
	n := 0
	for _, cm := range cms {
		if compile.Selected(cm.ConfigMap) {
			n++
		}
	}
	return n
}
