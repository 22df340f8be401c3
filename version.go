package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// version is set by `make build` (-ldflags "-X main.version=..."). Without
// it (go build, go install) the version comes from the build info: the
// module version, or the VCS revision Go stamped into the binary.
var version string

// versionString is the portal's version: the -X version, else the module
// version from the build info (v1.2.3 from `go install ...@v1.2.3`, or
// v0.0.0-<time>-<revision> from a build in a checkout), else "dev".
func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// versionLine is what `portal version` prints: the version, the VCS
// revision and time the binary was built from (when Go recorded them), the
// Go version and the platform.
func versionLine() string {
	var details []string
	if bi, ok := debug.ReadBuildInfo(); ok {
		set := map[string]string{}
		for _, s := range bi.Settings {
			set[s.Key] = s.Value
		}
		if rev := set["vcs.revision"]; rev != "" {
			d := "revision " + rev
			if t := set["vcs.time"]; t != "" {
				d += " of " + t
			}
			if set["vcs.modified"] == "true" {
				d += " with local changes"
			}
			details = append(details, d)
		}
	}
	details = append(details, runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH)
	return fmt.Sprintf("doorito-portal %s (%s)", versionString(), strings.Join(details, ", "))
}
