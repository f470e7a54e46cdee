// Argo CD's own Lua runner (util/lua: gopher-lua with Argo's library set, its JSON
// decoding of the object and its checks of the returned health) behind a JSON-lines
// main; tests/unit/test_argocd_health.py feeds it docs/argocd-health's scripts.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/argoproj/argo-cd/v3/util/lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// One request per line: {"op": "health"|"discovery"|"action", "script": ...,
// "scripts": [...], "obj": {...}}; one response per line: {"result": ...} or {"error": ...}.
type request struct {
	Op      string          `json:"op"`
	Script  string          `json:"script"`
	Scripts []string        `json:"scripts"`
	Obj     json.RawMessage `json:"obj"`
}

type response struct {
	Result any    `json:"result,omitempty"`
	Error  string `json:"error,omitempty"`
}

func handle(vm lua.VM, req request) (any, error) {
	obj := &unstructured.Unstructured{}
	// as Argo CD reads objects from the cluster: integers stay int64
	if err := obj.UnmarshalJSON(req.Obj); err != nil {
		return nil, err
	}
	switch req.Op {
	case "health":
		return vm.ExecuteHealthLua(obj, req.Script)
	case "discovery":
		return vm.ExecuteResourceActionDiscovery(obj, req.Scripts)
	case "action":
		return vm.ExecuteResourceAction(obj, req.Script, nil)
	}
	return nil, fmt.Errorf("unknown op %q", req.Op)
}

func main() {
	// UseOpenLibs false: what scripts from argocd-cm get in Argo CD's API server
	vm := lua.VM{}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req request
		var resp response
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			resp.Error = err.Error()
		} else if result, err := handle(vm, req); err != nil {
			resp.Error = err.Error()
		} else {
			resp.Result = result
		}
		if err := out.Encode(resp); err != nil {
			os.Exit(1)
		}
	}
}
