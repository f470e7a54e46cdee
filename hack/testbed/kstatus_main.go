// Wrapper main for the test bed's kstatus binary (built by hack/testbed/binaries.py).
//
// Reads one JSON value on stdin: a Kubernetes object, a JSON array of objects, or a
// *List object with items. Prints a JSON array with, for each object in order, the
// result of sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute, unchanged.
// Exits 1 with a message on stderr if the input is not JSON objects or Compute fails.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type condition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

type result struct {
	Status     string      `json:"status"`
	Message    string      `json:"message"`
	Conditions []condition `json:"conditions"`
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kstatus: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	// apimachinery's decoder keeps integers as int64, as the API machinery does;
	// encoding/json's float64 would make Compute reject metadata.generation.
	var doc any
	if err := utiljson.Unmarshal(data, &doc); err != nil {
		fail("stdin is not JSON: %v", err)
	}
	var items []any
	switch v := doc.(type) {
	case []any:
		items = v
	case map[string]any:
		kind, _ := v["kind"].(string)
		list, isList := v["items"].([]any)
		if isList && strings.HasSuffix(kind, "List") {
			items = list
		} else {
			items = []any{v}
		}
	default:
		fail("stdin holds neither an object nor an array")
	}
	out := make([]result, 0, len(items))
	for i, item := range items {
		obj, ok := item.(map[string]any)
		if !ok {
			fail("item %d is not an object", i)
		}
		res, err := status.Compute(&unstructured.Unstructured{Object: obj})
		if err != nil {
			fail("item %d: %v", i, err)
		}
		r := result{Status: string(res.Status), Message: res.Message, Conditions: []condition{}}
		for _, c := range res.Conditions {
			r.Conditions = append(r.Conditions, condition{
				Type: string(c.Type), Status: string(c.Status), Reason: c.Reason, Message: c.Message,
			})
		}
		out = append(out, r)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail("writing stdout: %v", err)
	}
}
