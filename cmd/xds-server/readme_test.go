package main

import (
	"os"
	"strings"
	"testing"
)

// readmeSample finds the README's fenced block whose first line is
// "$ xds-server " + first: the commands it shows (lines starting "$ ")
// and, between them, what they print.
func readmeSample(t *testing.T, readme, first string) (start, end int) {
	t.Helper()
	start = strings.Index(readme, "```\n$ xds-server "+first)
	if start < 0 {
		t.Fatalf("README.md has no sample starting with $ xds-server %s", first)
	}
	start += len("```\n")
	end = strings.Index(readme[start:], "```\n")
	if end < 0 {
		t.Fatal("README.md: sample not closed")
	}
	return start, start + end
}

// runSample runs every "$ xds-server ARGS" line of a sample from the
// repository's root and returns the sample as it should read.
func runSample(t *testing.T, sample string) string {
	t.Helper()
	var b strings.Builder
	for _, line := range strings.Split(sample, "\n") {
		cmd, ok := strings.CutPrefix(line, "$ xds-server ")
		if !ok {
			continue
		}
		_, out, errOut := runCmd(strings.Fields(cmd)...)
		b.WriteString(line + "\n" + out + errOut)
	}
	return b.String()
}

// The README's samples of validate are what validate prints, on the
// shipped examples and on the broken files of testdata/, and its sample
// of discover what discover proposes from testdata/audit.log beside the
// examples (go test ./cmd/xds-server -update rewrites them).
func TestReadmeValidateSample(t *testing.T) {
	t.Chdir("../..")
	for _, first := range []string{"validate ", "discover "} {
		data, err := os.ReadFile("README.md")
		if err != nil {
			t.Fatal(err)
		}
		readme := string(data)
		start, end := readmeSample(t, readme, first)
		got := runSample(t, readme[start:end])
		if *update {
			if err := os.WriteFile("README.md", []byte(readme[:start]+got+readme[end:]), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got != readme[start:end] {
			t.Errorf("README.md's %ssample is not what the commands print (go test ./cmd/xds-server -update rewrites it):\n--- got\n%s--- README\n%s", first, got, readme[start:end])
		}
	}
}
