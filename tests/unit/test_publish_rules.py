"""What counts as a difference between the render and the remote branch, and Argo CD's repository Secret."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from helpers import loopback_data
from homelab.config import loader
from homelab.config.schema import HomelabConfig
from homelab.core.secret_refs import REDACTOR
from homelab.gitops import bootstrap, publish, tree


def config(**gitops: Any) -> HomelabConfig:
    data = loopback_data()
    data["gitops"] = {**data.get("gitops", {}), **gitops}
    return loader.validate(data)


def test_rendered_files_the_remote_lacks_or_holds_otherwise_differ() -> None:
    cfg = config()
    wanted = {"k8s/a.yaml": tree.HEADER + "a: 1\n", "k8s/b.yaml": tree.HEADER + "b: 1\n"}
    remote = publish.RemoteTree("c0ffee", {"k8s/a.yaml": tree.HEADER + "a: 1\n", "k8s/b.yaml": tree.HEADER + "b: 0\n"})
    assert publish.difference(cfg, wanted, remote) == publish.Difference(["k8s/b.yaml"], [])
    assert publish.difference(cfg, wanted, publish.RemoteTree(None, {})).changed == ["k8s/a.yaml", "k8s/b.yaml"]


def test_only_files_the_toolkit_wrote_are_stale() -> None:
    cfg = config()
    remote = publish.RemoteTree(
        "c0ffee",
        {
            "k8s/apps/gone/app.yaml": tree.HEADER + "kind: Namespace\n",  # rendered once, no longer
            "k8s/extra/mine.yaml": "kind: ConfigMap\n",  # yours: no header
            "k8s/sealed/homepage-old.yaml": "kind: SealedSecret\n",  # sealed by secrets.seal, since deleted
        },
    )
    found = publish.difference(cfg, {}, remote)
    assert found.stale == ["k8s/apps/gone/app.yaml", "k8s/sealed/homepage-old.yaml"]
    assert found.lines(1) == ["k8s/apps/gone/app.yaml (no longer rendered)", "... and 1 more"]


@pytest.mark.parametrize("url", ["https://github.com/example/homelab.git", "https://github.com/example/homelab/"])
def test_the_example_repository_is_refused(url: str) -> None:
    with pytest.raises(publish.UsageError, match=r"gitops\.repo_url is the example"):
        publish.require_real_repository(config(repo_url=url))
    publish.require_real_repository(config(repo_url="https://github.com/someone/homelab.git"))


def test_private_repository_credentials_become_argo_cds_repository_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMELAB_TEST_REPO_TOKEN", "ghp_examplesecretvalue0123456789")
    https = config(
        repo_url="https://github.com/someone/homelab.git", repo_credentials={"env": "HOMELAB_TEST_REPO_TOKEN"}
    )
    secret = bootstrap.repository_secret(https)
    assert secret is not None
    assert secret["metadata"]["labels"]["argocd.argoproj.io/secret-type"] == "repository"
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        "type": "git",
        "url": "https://github.com/someone/homelab.git",
        "username": "git",
        "password": "ghp_examplesecretvalue0123456789",
    }
    assert REDACTOR.redact("ghp_examplesecretvalue0123456789") != "ghp_examplesecretvalue0123456789"
    ssh = config(repo_url="git@github.com:someone/homelab.git", repo_credentials={"env": "HOMELAB_TEST_REPO_TOKEN"})
    secret = bootstrap.repository_secret(ssh)
    assert secret is not None and set(secret["data"]) == {"type", "url", "sshPrivateKey"}
    assert bootstrap.repository_secret(config()) is None
