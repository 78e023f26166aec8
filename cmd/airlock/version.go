package main

import (
	"fmt"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// build says which airlock this binary is. Version comes from, in order:
// the -ldflags "-X main.version=..." value (make build, make release and
// the container image set it), the module version of `go install
// ...@v0.3.1`, the VCS revision `go build` embeds in a git checkout
// (short, with -dirty for uncommitted changes), else "dev".
type build struct {
	Version   string
	Revision  string    // full VCS revision; empty when not embedded
	Time      time.Time // commit time of Revision; zero when not embedded
	Modified  bool      // the work tree had uncommitted changes
	GoVersion string
	Platform  string // GOOS/GOARCH
}

// currentBuild describes this binary.
func currentBuild() build {
	info, _ := debug.ReadBuildInfo()
	return describeBuild(version, info, runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH)
}

// describeBuild is currentBuild on explicit inputs; ldflags is main.version
// ("dev" when -ldflags did not set it) and info may be nil.
func describeBuild(ldflags string, info *debug.BuildInfo, goVersion, platform string) build {
	b := build{Version: ldflags, GoVersion: goVersion, Platform: platform}
	if info == nil {
		return b
	}
	if info.GoVersion != "" {
		b.GoVersion = info.GoVersion
	}
	goos, goarch := "", ""
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time, _ = time.Parse(time.RFC3339Nano, s.Value)
		case "vcs.modified":
			b.Modified = s.Value == "true"
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	if goos != "" && goarch != "" {
		b.Platform = goos + "/" + goarch
	}
	if ldflags != "dev" && ldflags != "" {
		return b
	}
	mod := info.Main.Version
	switch {
	case isRelease(mod):
		// go install github.com/airlock-mcp/airlock/cmd/airlock@v0.3.1,
		// or go build at a tag in a clean checkout.
		b.Version = mod
	case b.Revision != "":
		// go build in a checkout: since Go 1.24 the module version is a
		// pseudo-version of the revision; the revision itself reads better.
		b.Version = shortRevision(b.Revision)
		if b.Modified {
			b.Version += "-dirty"
		}
	case mod != "" && mod != "(devel)":
		// go install ...@<commit or branch>: a pseudo-version, no VCS info.
		b.Version = mod
	default:
		b.Version = "dev"
	}
	return b
}

// pseudoVersion matches Go pseudo-versions (v0.0.0-20060102150405-abcdef123456
// and the forms after a tag), as golang.org/x/mod/module.IsPseudoVersion does.
var pseudoVersion = regexp.MustCompile(`^v[0-9]+\.(0\.0-|\d+\.\d+-([^+]*\.)?0\.)\d{14}-[A-Za-z0-9]+(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)

// isRelease reports whether a module version names a release: a semantic
// version that is neither a pseudo-version nor marked +dirty.
func isRelease(v string) bool {
	return strings.HasPrefix(v, "v") && !pseudoVersion.MatchString(v) && !strings.Contains(v, "+dirty")
}

func shortRevision(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// String is what `airlock version` prints.
func (b build) String() string {
	var s strings.Builder
	fmt.Fprintf(&s, "airlock %s\n", b.Version)
	if b.Revision != "" {
		dirty := ""
		if b.Modified {
			dirty = " (modified)"
		}
		fmt.Fprintf(&s, "  commit:   %s%s\n", b.Revision, dirty)
		if !b.Time.IsZero() {
			fmt.Fprintf(&s, "  date:     %s\n", b.Time.UTC().Format(time.RFC3339))
		}
	}
	fmt.Fprintf(&s, "  go:       %s\n", b.GoVersion)
	fmt.Fprintf(&s, "  platform: %s\n", b.Platform)
	return s.String()
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print airlock's version, commit, Go version and platform",
		Long: `Print airlock's version: the one set at build time (make build, make release,
the container image), else the module version (go install ...@v0.3.1), else
the commit it was built from (-dirty when the work tree had changes); then the
commit and its date when known, the Go version and the platform.`,
		Example: "  airlock version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprint(cmd.OutOrStdout(), currentBuild())
			return err
		},
	}
}
