// The distribution registry's own command (registry.RootCmd: `registry serve CONFIG`), linked
// with the storage drivers the tests use only: the filesystem (a temp directory) and memory.
// upstream's cmd/registry also links the S3, GCS and Azure drivers, the token and htpasswd
// authenticators and the pull-through proxy, which the tests never use and which would double
// the cold build.
package main

import (
	"os"

	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

func main() {
	// Execute prints a failed command's error itself; the exit code carries the failure.
	if err := registry.RootCmd.Execute(); err != nil {
		os.Exit(1)
	}
}
