// Command testagent is a stand-in for the runh binary in hvshim's tests: it
// only runs the guest agent.
package main

import (
	"fmt"
	"os"

	"github.com/runh-project/runh/hvshim/agent"
)

func main() {
	if agent.IsAgent() {
		agent.Main()
	}
	fmt.Fprintln(os.Stderr, "testagent: runs only as a VM's /init")
	os.Exit(1)
}
