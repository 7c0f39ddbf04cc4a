// Command kstatus prints what sigs.k8s.io/cli-utils/pkg/kstatus (the library Flux and
// `kubectl wait`-style tools use) computes for each Kubernetes object given as a JSON file:
// one line per file, "<status> <message>". The e2e tests feed it real StreamingTokens.
package main

import (
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kstatus OBJECT.json...")
		os.Exit(2)
	}
	for _, path := range os.Args[1:] {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		// UnmarshalJSON keeps integers as int64, as objects read from the API server are.
		object := &unstructured.Unstructured{}
		if err := object.UnmarshalJSON(data); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		result, err := status.Compute(object)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("%s %s\n", result.Status, result.Message)
	}
}
