// Package deploy tests how airlock is installed: the files under deploy/ at
// the repository root and the release tarballs of `make release`. It has no
// code of its own.
//
//	deploy/kubernetes/*.yaml ──server-side apply, dryRun: All──▶ a real kube-apiserver (testenv.Kube)
//	deploy/Dockerfile        ──stages, USER, COPY sources──────▶ the repository and go list -deps
//	deploy/compose.yaml      ──ports, mounts, build contexts───▶ the repository
//	configs in both          ──airlock config check────────────▶ the released binary
//	deploy/release.sh        ──tarball, sums, reproducibility──▶ the released binary
//
// No Docker engine is needed: the image and the compose stack are checked
// statically, the manifests against the API server.
package deploy
