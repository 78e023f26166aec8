// Command etcd is the etcd server, built from the module proxy so tests run
// the same etcd everywhere without a download step.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
