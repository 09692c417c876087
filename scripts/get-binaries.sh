#!/usr/bin/env bash
# Provide the pinned external binaries the toolkit and its tests need.
#
# Why a script and not a download: the machines that run CI reach the Go module
# proxy but no release pages, so everything is built from Go modules once and
# cached by version under $HOMELAB_CACHE_DIR (default ~/.cache/homelab). A warm
# cache makes this a no-op that only prints where the binaries are.
#
# Usage: scripts/get-binaries.sh [all|sandbox|crds|controllers|traefik|lima|restic|kubeseal|amtool|registry|tofu|boltdb|coredns|versitygw|velero]...
#        (default: all). Prints the bin directory to put on PATH as its last line.
set -euo pipefail

# Every version comes from versions.toml (the one version manifest; Renovate keeps it current).
# An environment variable of the same name still wins, to try another version without editing it.
PINS="$(cd "$(dirname "$0")/.." && pwd)/versions.toml"
command -v python3 >/dev/null 2>&1 || { echo "[get-binaries] error: python3 (>= 3.11) is required" >&2; exit 1; }
pin() { # pin TABLE.NAME.KEY: one value of the manifest
    python3 - "$PINS" "$1" <<'PY' || { echo "[get-binaries] error: no $1 in $PINS" >&2; exit 1; }
import sys, tomllib
value = tomllib.load(open(sys.argv[1], "rb"))
for key in sys.argv[2].split("."):
    value = value[key]
print(value)
PY
}
K8S_VERSION="${K8S_VERSION:-$(pin binaries.kubernetes.version)}"
ETCD_VERSION="${ETCD_VERSION:-$(pin binaries.etcd.version)}"
KWOK_VERSION="${KWOK_VERSION:-$(pin binaries.kwok.version)}"
LIMA_VERSION="${LIMA_VERSION:-$(pin binaries.lima.version)}"
RESTIC_VERSION="${RESTIC_VERSION:-$(pin binaries.restic.version)}"
TOFU_VERSION="${TOFU_VERSION:-$(pin binaries.tofu.version)}"
ALERTMANAGER_VERSION="${ALERTMANAGER_VERSION:-$(pin binaries.alertmanager.version)}"
# The controllers the sandbox runs as local processes, at the versions the real homelab deploys.
ARGOCD_VERSION="${ARGOCD_VERSION:-$(pin binaries.argocd.version)}"
ARGOCD_GO_TOOLCHAIN="${ARGOCD_GO_TOOLCHAIN:-$(pin toolchains.argocd)}"
SEALED_SECRETS_VERSION="${SEALED_SECRETS_VERSION:-$(pin binaries.sealed-secrets.version)}" # the controller and kubeseal
METALLB_VERSION="${METALLB_VERSION:-$(pin binaries.metallb.version)}"
CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-$(pin binaries.cert-manager.version)}"
PROMETHEUS_OPERATOR_VERSION="${PROMETHEUS_OPERATOR_VERSION:-$(pin binaries.prometheus-operator.version)}"
VELERO_VERSION="${VELERO_VERSION:-$(pin binaries.velero.version)}"
VELERO_AWS_VERSION="${VELERO_AWS_VERSION:-$(pin binaries.velero-plugin-for-aws.version)}"
# The edge (Gateway API controller and proxy in one binary) and the Gateway API CRDs its go.mod requires.
TRAEFIK_VERSION="${TRAEFIK_VERSION:-$(pin binaries.traefik.version)}"
GATEWAY_API_VERSION="${GATEWAY_API_VERSION:-$(pin binaries.gateway-api.version)}"
# The test bench's OCI registry and its client (inv versions.check resolves image tags against it).
DISTRIBUTION_VERSION="${DISTRIBUTION_VERSION:-$(pin binaries.distribution.version)}"
GGCR_VERSION="${GGCR_VERSION:-$(pin binaries.go-containerregistry.version)}"
# The LAN DNS server the homelab runs, for the test that queries the Corefile the toolkit renders.
COREDNS_VERSION="${COREDNS_VERSION:-$(pin binaries.coredns.version)}"
# The S3 server the offsite-copy tests run on 127.0.0.1 (versitygw over a directory).
VERSITYGW_VERSION="${VERSITYGW_VERSION:-$(pin binaries.versitygw.version)}"
# The Sealed Secrets module moved to github.com/bitnami/sealed-secrets, which the checksum database does not know.
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/bitnami/sealed-secrets"
# Component CRDs, shipped inside the components' own Go modules (module@version:dir).
CRD_SOURCES=(
    "argocd github.com/argoproj/argo-cd/v3@v$ARGOCD_VERSION manifests/crds"
    "cert-manager github.com/cert-manager/cert-manager@v$CERT_MANAGER_VERSION deploy/crds"
    "gateway-api sigs.k8s.io/gateway-api@v$GATEWAY_API_VERSION config/crd/standard"
    "traefik github.com/traefik/traefik/v3@v$TRAEFIK_VERSION docs/content/reference/dynamic-configuration"
    "metallb go.universe.tf/metallb@v$METALLB_VERSION config/crd/bases"
    "prometheus-operator github.com/prometheus-operator/prometheus-operator@v$PROMETHEUS_OPERATOR_VERSION example/prometheus-operator-crd"
    "sealed-secrets github.com/bitnami/sealed-secrets@v$SEALED_SECRETS_VERSION helm/sealed-secrets/crds"
    "velero github.com/vmware-tanzu/velero@v$VELERO_VERSION config/crd/v1/bases"
    "velero-v2alpha1 github.com/vmware-tanzu/velero@v$VELERO_VERSION config/crd/v2alpha1/bases" # `velero server` needs both
)

CACHE_DIR="${HOMELAB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/homelab}"
BIN_DIR="$CACHE_DIR/bin"
STAMP_DIR="$CACHE_DIR/stamps"
WORK_DIR="$CACHE_DIR/build"
LOG_DIR="$CACHE_DIR/logs" # one build log per component and version; only a failing build's tail is shown
TAIL_LINES=25
HEARTBEAT=${HOMELAB_BUILD_HEARTBEAT:-60} # seconds between "still building" lines
export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:--buildvcs=false}"

say() { printf '[get-binaries] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

command -v go >/dev/null 2>&1 ||
    die "Go is missing: install Go >= 1.25 (https://go.dev/doc/install, or apt-get install golang) and re-run"
mkdir -p "$BIN_DIR" "$STAMP_DIR" "$WORK_DIR" "$LOG_DIR"

# have NAME VERSION: true when the stamp for this exact version exists.
have() { [[ -f "$STAMP_DIR/$1-$2" ]]; }
stamp() { : >"$STAMP_DIR/$1-$2"; }

# timed NAME VERSION CMD...: run a build step once per version and report its time.
# A lock per NAME: a second get-binaries asking for the same build (setup.sh runs several at
# once) waits for the first and then uses what it built, instead of building it again beside it.
timed() {
    local name=$1 version=$2 lock
    shift 2
    if have "$name" "$version"; then
        say "$name $version: cached"
        return 0
    fi
    exec {lock}>"$STAMP_DIR/.$name.lock"
    flock "$lock"
    if have "$name" "$version"; then
        say "$name $version: built meanwhile by another get-binaries"
        exec {lock}>&-
        return 0
    fi
    local start=$SECONDS log="$LOG_DIR/$name-$version.log" rc=0
    say "$name $version: building from Go modules (first time only; log: $log)"
    # In the background so that `set -e` still stops the build at its first failing step (it is
    # ignored in a function called from a condition); its output goes to its own log.
    "$@" >"$log" 2>&1 &
    local pid=$! next=$((SECONDS + HEARTBEAT))
    while kill -0 "$pid" 2>/dev/null; do # minutes of Go build are not minutes of silence
        sleep 1
        if ((SECONDS >= next)) && kill -0 "$pid" 2>/dev/null; then
            say "$name $version: still building ($((SECONDS - start))s)"
            next=$((SECONDS + HEARTBEAT))
        fi
    done
    wait "$pid" || rc=$?
    if [[ $rc -ne 0 ]]; then
        exec {lock}>&-
        say "$name $version: build failed (exit $rc) after $((SECONDS - start))s; the last $TAIL_LINES lines of $log:"
        tail -n "$TAIL_LINES" "$log" | sed 's/^/    | /' >&2
        return "$rc"
    fi
    stamp "$name" "$version"
    exec {lock}>&-
    say "$name $version: built in $((SECONDS - start))s"
}

# go_install MODULE_PATH VERSION: `go install` into the bin dir.
go_install() { GOBIN="$BIN_DIR" go install "$1@$2"; }

build_kubernetes() {
    local dir="$WORK_DIR/kubernetes-$K8S_VERSION"
    local minor=${K8S_VERSION#*.}
    minor=${minor%%.*}
    mkdir -p "$dir"
    local gomod
    gomod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" |
        sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    [[ -f "$gomod" ]] || die "could not fetch k8s.io/kubernetes v$K8S_VERSION from the Go module proxy"
    # Each staging module is published on its own as v0.<minor>.<patch>.
    {
        echo "module homelab.local/kube-build"
        echo "go $(sed -n 's/^go //p' "$gomod")"
        grep '^godebug' "$gomod" || true
        echo "require k8s.io/kubernetes v$K8S_VERSION"
        grep '=> ./staging' "$gomod" | awk -v v="v0.${K8S_VERSION#*.}" '{print "replace " $1 " => " $1 " " v}'
    } >"$dir/go.mod"
    cat >"$dir/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF
    local x="" pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        x+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        x+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    (
        cd "$dir"
        go mod tidy -e >/dev/null
        go build -trimpath -ldflags "-s -w$x" -o "$BIN_DIR/" \
            k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
            k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
    )
}

# go_build_pinned NAME MODULE VERSION PACKAGE OUT [LDFLAGS]: build PACKAGE from
# MODULE@VERSION through a throwaway wrapper module. Unlike `go install m@v`,
# this works for modules with replace directives (the module's own non-local
# replaces are carried over, its relative ones like etcd's are dropped) and
# never asks the proxy for the module's version list (refused for some modules).
go_build_pinned() {
    local name=$1 module=$2 version=$3 package=$4 out=$5 ldflags=${6:-}
    local dir="$WORK_DIR/$name-$version"
    mkdir -p "$dir"
    local gomod
    gomod=$(cd "$dir" && go mod download -json "$module@v$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    [[ -f "$gomod" ]] || die "could not fetch $module v$version from the Go module proxy"
    {
        printf 'module homelab.local/%s-build\ngo %s\nrequire %s v%s\n' \
            "$name" "$(sed -n 's/^go //p' "$gomod")" "$module" "$version"
        grep '^replace .* => [^.]' "$gomod" || true
    } >"$dir/go.mod"
    printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$package" >"$dir/tools.go"
    (cd "$dir" && go mod tidy -e >/dev/null && go build -trimpath -ldflags "-s -w $ldflags" -o "$out" "$package")
}

build_etcd() {
    go_build_pinned etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 "$BIN_DIR/etcd" \
        "-X go.etcd.io/etcd/api/v3/version.GitSHA=v$ETCD_VERSION"
}

build_kwok() {
    go_install sigs.k8s.io/kwok/cmd/kwok "v$KWOK_VERSION"
    go_install sigs.k8s.io/kwok/cmd/kwokctl "v$KWOK_VERSION"
}

build_lima() {
    go_build_pinned limactl github.com/lima-vm/lima "$LIMA_VERSION" github.com/lima-vm/lima/cmd/limactl "$BIN_DIR/limactl" \
        "-X github.com/lima-vm/lima/pkg/version.Version=$LIMA_VERSION"
}
# Lima's guest agent, where limactl looks for it (share/lima next to bin/), and where the
# guest image bakes it in (scripts/build-guest-image.sh). Built for x86_64 Linux guests.
build_lima_guestagent() {
    mkdir -p "$CACHE_DIR/share/lima"
    GOOS=linux GOARCH=amd64 CGO_ENABLED=0 go_build_pinned limactl github.com/lima-vm/lima "$LIMA_VERSION" \
        github.com/lima-vm/lima/cmd/lima-guestagent "$CACHE_DIR/share/lima/lima-guestagent.Linux-x86_64" \
        "-X github.com/lima-vm/lima/pkg/version.Version=$LIMA_VERSION"
}
build_restic() { go_install github.com/restic/restic/cmd/restic "v$RESTIC_VERSION"; }
build_kubeseal() {
    GOFLAGS=-mod=mod CGO_ENABLED=0 go_build_pinned kubeseal github.com/bitnami/sealed-secrets "$SEALED_SECRETS_VERSION" \
        github.com/bitnami/sealed-secrets/cmd/kubeseal "$BIN_DIR/kubeseal" "-X main.VERSION=$SEALED_SECRETS_VERSION"
}
build_tofu() {
    go_build_pinned tofu github.com/opentofu/opentofu "$TOFU_VERSION" github.com/opentofu/opentofu/cmd/tofu "$BIN_DIR/tofu" \
        "-X github.com/opentofu/opentofu/version.dev=no"
}

# The test bench's OCI registry (the CNCF distribution registry) and crane, which pushes images into it.
build_registry() {
    CGO_ENABLED=0 go_build_pinned registry github.com/distribution/distribution/v3 "$DISTRIBUTION_VERSION" \
        github.com/distribution/distribution/v3/cmd/registry "$BIN_DIR/registry"
    CGO_ENABLED=0 go_build_pinned crane github.com/google/go-containerregistry "$GGCR_VERSION" \
        github.com/google/go-containerregistry/cmd/crane "$BIN_DIR/crane"
}

build_versitygw() {
    CGO_ENABLED=0 go_build_pinned versitygw github.com/versity/versitygw "$VERSITYGW_VERSION" \
        github.com/versity/versitygw/cmd/versitygw "$BIN_DIR/versitygw"
}

# Velero's server and its AWS (S3) object-store plugin: the Velero integration test runs both as
# local processes against the sandbox and a local S3 server. The plugin is a separate binary that
# the server starts from its --plugin-dir.
# The pinned Velero requires k8s.io/cli-runtime v0.33.12, which the module proxy refuses (403: "not
# available"); the wrapper module replaces it with v0.33.10, the newest patch the proxy serves (same
# minor, same API). The module's own replace (its kopia fork) is carried over.
# The wrapper's main is Velero's own command tree (pkg/cmd/velero.NewCommand, as cmd/velero does) with
# one difference: `velero server`'s controller-runtime manager would serve its metrics on :8080, every
# interface, with no flag to move it (controller-runtime pkg/metrics/server DefaultBindAddress); the
# wrapper sets that default from HOMELAB_VELERO_MANAGER_METRICS, "0" (off) when unset, so a server run
# on the sandbox listens only where its flags say (--metrics-address, --profiler-address).
VELERO_CLI_RUNTIME="${VELERO_CLI_RUNTIME:-v0.33.10}"
build_velero() {
    local dir="$WORK_DIR/velero-$VELERO_VERSION" module=github.com/vmware-tanzu/velero gomod
    mkdir -p "$dir"
    gomod=$(cd "$dir" && go mod download -json "$module@v$VELERO_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    [[ -f "$gomod" ]] || die "could not fetch $module v$VELERO_VERSION from the Go module proxy"
    {
        printf 'module homelab.local/velero-build\ngo %s\nrequire %s v%s\n' \
            "$(sed -n 's/^go //p' "$gomod")" "$module" "$VELERO_VERSION"
        grep '^replace .* => [^.]' "$gomod" || true
        echo "replace k8s.io/cli-runtime => k8s.io/cli-runtime $VELERO_CLI_RUNTIME"
    } >"$dir/go.mod"
    rm -f "$dir/tools.go"
    cat >"$dir/main.go" <<'GO'
// Command velero: Velero's own command tree, its manager's metrics listener off unless asked for.
package main

import (
	"os"
	"path/filepath"

	"github.com/vmware-tanzu/velero/pkg/cmd"
	"github.com/vmware-tanzu/velero/pkg/cmd/velero"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

func main() {
	metricsserver.DefaultBindAddress = "0"
	if address, ok := os.LookupEnv("HOMELAB_VELERO_MANAGER_METRICS"); ok {
		metricsserver.DefaultBindAddress = address
	}
	cmd.CheckError(velero.NewCommand(filepath.Base(os.Args[0])).Execute())
}
GO
    (
        cd "$dir"
        CGO_ENABLED=0 go mod tidy -e >/dev/null
        CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X $module/pkg/buildinfo.Version=v$VELERO_VERSION" \
            -o "$BIN_DIR/velero" .
    )
}
build_velero_plugin_aws() {
    mkdir -p "$CACHE_DIR/velero-plugins"
    CGO_ENABLED=0 go_build_pinned velero-plugin-for-aws github.com/vmware-tanzu/velero-plugin-for-aws "$VELERO_AWS_VERSION" \
        github.com/vmware-tanzu/velero-plugin-for-aws/velero-plugin-for-aws "$CACHE_DIR/velero-plugins/velero-plugin-for-aws"
}

# CoreDNS, the LAN DNS server: the integration test runs it on the Corefile the toolkit renders.
build_coredns() {
    CGO_ENABLED=0 go_build_pinned coredns github.com/coredns/coredns "$COREDNS_VERSION" \
        github.com/coredns/coredns "$BIN_DIR/coredns" "-X github.com/coredns/coredns/coremain.GitCommit=v$COREDNS_VERSION"
}

build_amtool() {
    go_build_pinned amtool github.com/prometheus/alertmanager "$ALERTMANAGER_VERSION" \
        github.com/prometheus/alertmanager/cmd/amtool "$BIN_DIR/amtool"
}

# The Argo CD binary is multicall (argv[0] picks the component), like upstream's image.
build_argocd() {
    GOTOOLCHAIN="$ARGOCD_GO_TOOLCHAIN" GOFLAGS=-mod=mod CGO_ENABLED=0 go_build_pinned argocd \
        github.com/argoproj/argo-cd/v3 "$ARGOCD_VERSION" github.com/argoproj/argo-cd/v3/cmd "$BIN_DIR/argocd" \
        "-X github.com/argoproj/argo-cd/v3/common.version=$ARGOCD_VERSION"
    local src
    src=$(cd "$WORK_DIR/argocd-$ARGOCD_VERSION" &&
        GOTOOLCHAIN="$ARGOCD_GO_TOOLCHAIN" go mod download -json "github.com/argoproj/argo-cd/v3@v$ARGOCD_VERSION" |
        sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
    install -m 0755 "$src/hack/git-verify-wrapper.sh" "$BIN_DIR/git-verify-wrapper.sh"
    ln -sf argocd "$BIN_DIR/argocd-application-controller"
    ln -sf argocd "$BIN_DIR/argocd-repo-server"
    ln -sf argocd "$BIN_DIR/argocd-git-ask-pass"
}
build_sealed_controller() {
    GOFLAGS=-mod=mod CGO_ENABLED=0 go_build_pinned sealed-secrets \
        github.com/bitnami/sealed-secrets "$SEALED_SECRETS_VERSION" github.com/bitnami/sealed-secrets/cmd/controller \
        "$BIN_DIR/sealed-secrets-controller" "-X main.VERSION=$SEALED_SECRETS_VERSION"
}
build_metallb() {
    GOFLAGS=-mod=mod CGO_ENABLED=0 go_build_pinned metallb go.universe.tf/metallb "$METALLB_VERSION" \
        go.universe.tf/metallb/controller "$BIN_DIR/metallb-controller"
}

# Traefik's go.mod replaces modules the proxy cannot give a wrapper module as they are, so the wrapper
# writes its own replaces: github.com/traefik/traefik/dynamic/ext is a nested module of Traefik's
# repository (pkg/config/dynamic/ext, with its own go.mod, so not in the v3 module's zip); it only
# declares two empty extension points (ext.HTTP, ext.Router) that dynamic.HTTP and dynamic.Router
# embed, written here. Its fork of github.com/abbot/go-http-auth (containous/go-http-auth) is not
# served by the module proxy (403): the original, v0.4.0, is copied in with the two functions the
# fork adds (CheckSecret: BasicAuth's own hash comparison, exported; RequireAuthStale: the digest
# challenge with stale=TRUE, RFC 7616 section 3.3); they back only the BasicAuth and DigestAuth
# middlewares, which the homelab renders none of. Its gorilla/mux fork is carried over as is. The
# web UI is embedded from webui/static, which the module holds.
# Traefik's ACME client (lego) registers every DNS provider lego has, each with its cloud SDK: about
# 800 of the build's 2500 packages, and some SDKs are not served by the module proxy (403). The
# homelab never uses Traefik's ACME (cert-manager issues the certificate), so lego's registry is
# replaced by one that knows no DNS provider: a third less to compile, and nothing the homelab runs
# is missing (a DNS-01 resolver configured in Traefik would fail with "unrecognized DNS provider").
build_traefik() {
    local dir="$WORK_DIR/traefik-$TRAEFIK_VERSION" module=github.com/traefik/traefik/v3 src
    mkdir -p "$dir/ext"
    src=$(cd "$dir" && go mod download -json "$module@v$TRAEFIK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
    [[ -f "$src/go.mod" ]] || die "could not fetch $module v$TRAEFIK_VERSION from the Go module proxy"
    printf 'module github.com/traefik/traefik/dynamic/ext\n\ngo 1.24\n' >"$dir/ext/go.mod"
    printf '%s\n' '// Package ext holds the extension points of dynamic.HTTP and dynamic.Router; empty in Traefik proper.' \
        'package ext' '' 'type HTTP struct{}' '' 'type Router struct{}' '' 'type RouterIng struct{}' '' \
        'func (r RouterIng) ToRouter() Router { return Router{} }' >"$dir/ext/ext.go"
    {
        printf 'module homelab.local/traefik-build\ngo %s\nrequire %s v%s\n' \
            "$(sed -n 's/^go //p' "$src/go.mod")" "$module" "$TRAEFIK_VERSION"
        echo "replace github.com/traefik/traefik/dynamic/ext => ./ext"
        echo "replace github.com/abbot/go-http-auth => ./go-http-auth"
        grep -E '^\s*github.com/gorilla/mux => ' "$src/go.mod" | sed 's/^\s*/replace /'
        grep '^exclude ' "$src/go.mod" || true
    } >"$dir/go.mod"
    local httpauth
    httpauth=$(cd "$dir" && go mod download -json github.com/abbot/go-http-auth@v0.4.0 |
        sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
    [[ -d "$httpauth" ]] || die "could not fetch github.com/abbot/go-http-auth v0.4.0 from the Go module proxy"
    rm -rf "$dir/go-http-auth" && cp -r "$httpauth" "$dir/go-http-auth" && chmod -R u+w "$dir/go-http-auth"
    printf 'module github.com/abbot/go-http-auth\n\ngo 1.20\n' >"$dir/go-http-auth/go.mod"  # v0.4.0 predates modules
    cat >"$dir/go-http-auth/fork.go" <<'GO'
package auth

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// CheckSecret reports whether password matches secret, an htpasswd entry, as BasicAuth.CheckAuth compares them.
func CheckSecret(password, secret string) bool {
	compare := compareFuncs[0].compare
	for _, cmp := range compareFuncs[1:] {
		if strings.HasPrefix(secret, cmp.prefix) {
			compare = cmp.compare
			break
		}
	}
	return compare([]byte(secret), []byte(password)) == nil
}

// RequireAuthStale answers like RequireAuth, telling the client its nonce went stale (RFC 7616, 3.3).
func (a *DigestAuth) RequireAuthStale(w http.ResponseWriter, r *http.Request) {
	if len(a.clients) > a.ClientCacheSize+a.ClientCacheTolerance {
		a.Purge(a.ClientCacheTolerance * 2)
	}
	nonce := RandomKey()
	a.clients[nonce] = &digest_client{nc: 0, last_seen: time.Now().UnixNano()}
	w.Header().Set(contentType, a.Headers.V().UnauthContentType)
	w.Header().Set(a.Headers.V().Authenticate,
		fmt.Sprintf(`Digest realm="%s", nonce="%s", opaque="%s", algorithm="MD5", qop="auth", stale=TRUE`,
			a.Realm, nonce, a.Opaque))
	w.WriteHeader(a.Headers.V().UnauthCode)
	w.Write([]byte(a.Headers.V().UnauthResponse))
}
GO
    local lego lego_version
    lego_version=$(sed -n 's#^\s*github.com/go-acme/lego/v5 \(v[^ ]*\)$#\1#p' "$src/go.mod")
    lego=$(cd "$dir" && go mod download -json "github.com/go-acme/lego/v5@$lego_version" |
        sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
    [[ -d "$lego" ]] || die "could not fetch github.com/go-acme/lego/v5 $lego_version from the Go module proxy"
    rm -rf "$dir/lego" && cp -r "$lego" "$dir/lego" && chmod -R u+w "$dir/lego"
    cat >"$dir/lego/providers/dns/zz_gen_dns_providers.go" <<'GO'
// Package dns: lego's DNS provider registry, with no provider (Traefik's ACME is not used by the homelab).
package dns

import (
	"fmt"

	"github.com/go-acme/lego/v5/challenge"
)

// NewDNSChallengeProviderByName knows no DNS provider in this build.
func NewDNSChallengeProviderByName(name string) (challenge.Provider, error) {
	return nil, fmt.Errorf("unrecognized DNS provider: %s (this Traefik build has no DNS-01 providers)", name)
}
GO
    echo "replace github.com/go-acme/lego/v5 => ./lego" >>"$dir/go.mod"
    install -m 0644 "$src/go.sum" "$dir/go.sum"
    printf '//go:build tools\n\npackage tools\n\nimport _ "%s/cmd/traefik"\n' "$module" >"$dir/tools.go"
    (
        cd "$dir"
        CGO_ENABLED=0 go mod tidy -e >/dev/null
        CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X $module/pkg/version.Version=v$TRAEFIK_VERSION" \
            -o "$BIN_DIR/traefik" "$module/cmd/traefik"
    )
}

# fetch_crds: copy each component's CRD files out of the module cache into
# $CACHE_DIR/crds/<component>-<version>/ (the sandbox and the tests install them) and
# remove the directories of versions no longer pinned, which would be installed too.
fetch_crds() {
    local entry name module dir src out toolchain kept=()
    for entry in "${CRD_SOURCES[@]}"; do
        read -r name module dir <<<"$entry"
        out="$CACHE_DIR/crds/$name-${module##*@}"
        kept+=("$out")
        [[ -d "$out" ]] && continue
        toolchain=$GOTOOLCHAIN
        [[ $name == argocd ]] && toolchain=$ARGOCD_GO_TOOLCHAIN # its go.mod asks for a newer Go
        src=$(cd "$WORK_DIR" && GOTOOLCHAIN=$toolchain go mod download -json "$module" |
            sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
        [[ -d "$src/$dir" ]] || die "no CRDs at $module/$dir"
        mkdir -p "$out.tmp"
        find "$src/$dir" -maxdepth 1 -name '*.yaml' ! -name 'kustomization.yaml' -exec cp {} "$out.tmp/" \;
        chmod -R u+w "$out.tmp"
        mv "$out.tmp" "$out"
        if [[ $name == argocd ]]; then  # ArgoCD's own install manifest, for gitops.bootstrap tests
            mkdir -p "$CACHE_DIR/manifests"
            cp "$src/manifests/install.yaml" "$CACHE_DIR/manifests/argocd-install-${module##*@}.yaml"
            chmod u+w "$CACHE_DIR/manifests/argocd-install-${module##*@}.yaml"
        fi
    done
    for out in "$CACHE_DIR"/crds/*/; do
        out=${out%/}
        [[ " ${kept[*]} " == *" $out "* ]] || rm -rf -- "$out"
    done
    echo "$CACHE_DIR/crds" >"$STAMP_DIR/crds-dir"
}

want_sandbox() {
    timed kubernetes "$K8S_VERSION" build_kubernetes
    timed etcd "$ETCD_VERSION" build_etcd
    timed kwok "$KWOK_VERSION" build_kwok
}
want_lima() {
    timed limactl "$LIMA_VERSION" build_lima
    timed lima-guestagent "$LIMA_VERSION" build_lima_guestagent
}
want_restic() { timed restic "$RESTIC_VERSION" build_restic; }
want_kubeseal() { timed kubeseal "$SEALED_SECRETS_VERSION" build_kubeseal; }
want_amtool() { timed amtool "$ALERTMANAGER_VERSION" build_amtool; }
want_coredns() { timed coredns "$COREDNS_VERSION" build_coredns; }
want_versitygw() { timed versitygw "$VERSITYGW_VERSION" build_versitygw; }
want_velero() {
    timed velero "$VELERO_VERSION-wrapped" build_velero
    timed velero-plugin-for-aws "$VELERO_AWS_VERSION" build_velero_plugin_aws
}
want_registry() { timed registry "$DISTRIBUTION_VERSION-$GGCR_VERSION" build_registry; }
# The live-writer backup test's BoltDB writer and checker (tests/boltdb, on go.etcd.io/bbolt): built
# here, keyed by its sources, so the test run itself fetches no module.
BOLTDB_DIR="$(cd "$(dirname "$0")/.." && pwd)/tests/boltdb"
build_boltdb() { (cd "$BOLTDB_DIR" && CGO_ENABLED=0 go build -o "$BIN_DIR/homelab-boltdb-test" .); }
want_boltdb() {
    timed homelab-boltdb-test "$(cat "$BOLTDB_DIR"/go.mod "$BOLTDB_DIR"/go.sum "$BOLTDB_DIR"/*.go | sha256sum | cut -c1-12)" \
        build_boltdb
}
want_crds() { timed crds "$(printf '%s' "${CRD_SOURCES[*]}" "install-v2" | sha256sum | cut -c1-12)" fetch_crds; }
want_controllers() {
    timed argocd "$ARGOCD_VERSION" build_argocd
    timed sealed-secrets-controller "$SEALED_SECRETS_VERSION" build_sealed_controller
    timed metallb-controller "$METALLB_VERSION" build_metallb
    want_traefik
}
want_traefik() { timed traefik "$TRAEFIK_VERSION-no-dns01" build_traefik; }
want_tofu() {
    if command -v terraform >/dev/null 2>&1 || command -v tofu >/dev/null 2>&1; then
        say "terraform/tofu: found on PATH, nothing to build"
    else
        timed tofu "$TOFU_VERSION" build_tofu
    fi
}

# everything, in two lanes at once: a Go build leaves a core idle while it downloads modules and
# links, so two lanes of about equal measured build time finish sooner than one after the other.
want_all() {
    (want_sandbox; want_crds; want_restic; want_kubeseal; want_lima; want_boltdb; want_versitygw) &
    local first=$!
    (want_controllers; want_amtool; want_registry; want_tofu; want_coredns; want_velero) &
    local second=$! failed=0
    wait "$first" || failed=1
    wait "$second" || failed=1
    [[ $failed -eq 0 ]] || die "a build failed (its log's tail is above); re-run to finish: finished builds are kept"
}

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(all)
for t in "${targets[@]}"; do
    case "$t" in
    all) want_all ;;
    sandbox | crds | lima | restic | kubeseal | amtool | registry | tofu | controllers | traefik | boltdb | coredns | versitygw | velero) "want_$t" ;;
    *) die "unknown target '$t' (use all, sandbox, crds, controllers, traefik, lima, restic, kubeseal, amtool, registry, tofu, boltdb, coredns, versitygw or velero)" ;;
    esac
done
echo "$BIN_DIR"
