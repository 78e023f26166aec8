//go:build tools

// Package kube pins the kube-apiserver that internal/testenv starts: the
// import keeps it in go.mod and go.sum so build.sh can build it.
package kube

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
