// Command argocd-health evaluates an Argo CD resource health check (a Lua script) against
// Kubernetes objects given as JSON files, with Argo CD's own Lua runtime
// (github.com/argoproj/argo-cd/v3/util/lua, the code the application controller runs).
// It prints one line per file: "<health status> <message>". The e2e tests feed it real
// StreamingTokens and the health check the chart ships.
package main

import (
	"fmt"
	"os"

	"github.com/argoproj/argo-cd/v3/util/lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: argocd-health HEALTH.lua OBJECT.json...")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail(err)
	}
	for _, path := range os.Args[2:] {
		data, err := os.ReadFile(path)
		if err != nil {
			fail(err)
		}
		object := &unstructured.Unstructured{}
		if err := object.UnmarshalJSON(data); err != nil {
			fail(err)
		}
		vm := lua.VM{}
		health, err := vm.ExecuteHealthLua(object, string(script))
		if err != nil {
			fail(err)
		}
		fmt.Printf("%s %s\n", health.Status, health.Message)
	}
}
