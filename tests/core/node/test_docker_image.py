"""The Docker runtime's engine image: built here from the same lock and FarMesh commit as the native engine.

No Docker daemon runs on this machine (the CLI is here, the daemon is not), so the image is not built here.
What is checked instead: the Dockerfile and the command lines the runtime generates; the Dockerfile's own
steps, executed one by one on this machine (its RUN lines as written, in a fresh Python environment, against a
local package index, its COPY and ENV as Docker applies them), install the locked packages and FarMesh at its
pinned commit; the verification of a built image (the engine probe's output, the image's labels) accepts the
real engine and refuses another; the ready record follows the verified image.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from farnode_desktop.core import engine_lock
from farnode_desktop.core.engine_lock import (
    LOCK_VERSION,
    env_folder_name,
    lock_digest,
    lock_path,
    pip_install_options,
    read_lock,
)
from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.node.engine_venv import env_root
from farnode_desktop.core.node.runtimes.base import SetupStep, StepResult, run_steps
from farnode_desktop.core.node.runtimes.docker import (
    BASE_IMAGE,
    DockerRuntime,
    engine_image,
    image_labels_problem,
    probe_problem,
    write_build_context,
)
from tests.support import REPO

PINNED = "75a473e888c7bc20e7c28e96c3e0911c581bca1b"


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(instruction, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in dockerfile.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def test_the_dockerfile_installs_the_lock_as_the_native_engine_does(tmp_path, engine_archive):
    env = {"FARNODE_TORCH_INDEX": "https://mirror.example/whl/cpu", "PIP_INDEX_URL": "http://127.0.0.1:3141/simple/"}
    ctx = write_build_context(tmp_path / "ctx", "cpu", local_source=engine_archive, host_env=env)
    lock = read_lock(lock_path("cpu"))
    digest = lock_digest(lock_path("cpu"))
    assert ctx.tag == engine_image("cpu") == f"farnode-engine:cpu-v{LOCK_VERSION}-{digest[:12]}"
    assert ctx.tag.endswith(env_folder_name("cpu"))  # the native environment's folder name
    steps = _instructions(ctx.dockerfile)
    assert steps[0] == ("FROM", BASE_IMAGE)
    runs = [a for w, a in steps if w == "RUN"]
    assert len(runs) == len(lock)  # one layer per locked package: a build cut short resumes
    for req, run in zip(lock, runs, strict=True):
        argv = shlex.split(run)
        assert argv[:4] == ["python", "-m", "pip", "install"]
        if req.url:
            assert argv[-1] == f"./{engine_archive.name}" and "--no-deps" in argv
        else:
            assert argv[-1] == req.spec
            assert argv[-1 - len(pip_install_options(req, "cpu", env)):-1] == pip_install_options(req, "cpu", env)
    torch = shlex.split(next(r for r in runs if "torch==" in r))
    assert torch[-3:] == ["--extra-index-url", "https://mirror.example/whl/cpu", "torch==2.13.0+cpu"]
    labels = dict(kv.split("=", 1) for _, a in steps if _ == "LABEL" for kv in shlex.split(a))
    assert labels == {"farnode.lock": digest, "farnode.lock_version": str(LOCK_VERSION), "farnode.variant": "cpu",
                      "farnode.engine": "farmesh", "farnode.engine.version": "2.3.0.dev2",
                      "farnode.engine.commit": PINNED}
    assert "petals" not in ctx.dockerfile.read_text().lower()
    assert (ctx.folder / engine_archive.name).read_bytes() == engine_archive.read_bytes()
    assert ctx.build_argv() == ["docker", "build", "--progress=plain", "-t", ctx.tag, "--build-arg",
                                "PIP_INDEX_URL=http://127.0.0.1:3141/simple/", "--network", "host", str(ctx.folder)]


def test_without_a_local_archive_the_image_installs_the_pinned_commits_archive(tmp_path):
    ctx = write_build_context(tmp_path / "ctx", "cuda", host_env={})
    runs = [shlex.split(a) for w, a in _instructions(ctx.dockerfile) if w == "RUN"]
    assert runs[-1][-1] == f"https://github.com/QuantumLabs-Git/farmesh/archive/{PINNED}.tar.gz"
    torch = next(r for r in runs if any(a.startswith("torch==") for a in r))
    assert "--no-deps" not in torch and "--extra-index-url" not in torch  # CUDA torch brings its nvidia-* wheels
    assert ctx.build_args == {} and "--network" not in ctx.build_argv()


def test_a_wrong_or_missing_engine_archive_is_refused(tmp_path):
    with pytest.raises(FarNodeError, match="does not exist"):
        write_build_context(tmp_path / "ctx", "cpu", local_source=tmp_path / "nope.tar.gz", host_env={})
    other = tmp_path / "other.tar.gz"
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    (tmp_path / "repo" / "f").write_text("x")
    subprocess.run(["git", "-C", str(tmp_path / "repo"), "add", "f"], check=True)
    subprocess.run(["git", "-C", str(tmp_path / "repo"), "-c", "user.name=t", "-c", "user.email=t@t", "commit",
                    "-qm", "x"], check=True)
    subprocess.run(["git", "-C", str(tmp_path / "repo"), "archive", "-o", str(other), "HEAD"], check=True)
    with pytest.raises(FarNodeError, match=f"needs commit {PINNED}"):
        write_build_context(tmp_path / "ctx", "cpu", local_source=other, host_env={})


def test_the_dockerfiles_steps_install_the_engine_at_its_pinned_commit(tmp_path, build_tools, engine_archive):
    """The generated Dockerfile for a small lock (two packages and FarMesh) executed step by step here: a
    fresh Python stands for the base image, the package index is local."""
    lock = tmp_path / "lock.txt"
    lock.write_text(f"farnode-probe-a==1.0\nfarnode-probe-b==2.0\n"
                    f"farmesh==2.3.0.dev2 @ git+https://github.com/QuantumLabs-Git/farmesh.git@{PINNED}\n")
    ctx = write_build_context(tmp_path / "ctx", "cpu", local_source=engine_archive, lock_file=lock,
                              host_env=dict(os.environ))
    image = tmp_path / "image"  # the image's file system
    venv = image / "python"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = dict(os.environ, PATH=f"{venv / 'bin'}:{os.environ['PATH']}")
    env.pop("PYTHONPATH", None)
    workdir = image
    labels = {}
    for word, args in _instructions(ctx.dockerfile):
        if word == "ENV":
            env.update(kv.split("=", 1) for kv in shlex.split(args))
        elif word == "WORKDIR":
            workdir = image / args.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif word == "COPY":
            src, dst = shlex.split(args)
            target = image / dst.lstrip("/") if dst.startswith("/") else workdir / dst
            if dst.endswith("/"):
                target = target / src
            shutil.copyfile(ctx.folder / src, target)
        elif word == "RUN":
            done = subprocess.run(["sh", "-c", args], cwd=workdir, env=env, capture_output=True, text=True,
                                  timeout=600)
            assert done.returncode == 0, (args, done.stdout, done.stderr)
        elif word == "LABEL":
            labels.update(kv.split("=", 1) for kv in shlex.split(args))
    listed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
                            capture_output=True, text=True, check=True, env=env).stdout
    have = {p["name"].lower(): p["version"] for p in json.loads(listed)}
    assert have["farnode-probe-a"] == "1.0" and have["farnode-probe-b"] == "2.0"
    assert have["farmesh"] == "2.3.0.dev2"
    assert json.loads((image / "opt/farnode/engine-source.json").read_text()) == {
        "kind": "local", "where": engine_archive.name, "commit": PINNED}
    assert labels["farnode.engine.commit"] == PINNED and labels["farnode.lock"] == lock_digest(lock)


@pytest.fixture(scope="module")
def real_probe_output() -> str:
    """What the engine probe prints in the suite's shared (native) engine: the image runs the same probe."""
    root = Path(os.environ.get("FARNODE_ENGINE_ROOT") or REPO / ".engine")
    python = env_root(root, "cpu") / "venv" / "bin" / "python"
    if not python.exists():
        pytest.fail(f"No engine environment under {root}: run scripts/test.sh (it sets it up).")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return subprocess.run([str(python), "-m", "farnode_desktop.engine.probe"], capture_output=True, text=True,
                          check=True, env=dict(env, PYTHONPATH=str(REPO)), cwd=REPO, timeout=300).stdout


def test_the_image_is_verified_as_the_native_engine_is(real_probe_output):
    assert probe_problem(real_probe_output, "cpu") == ""
    probe = json.loads(real_probe_output.strip().splitlines()[-1])
    wrong = json.dumps(dict(probe, engine="petals", engine_version="2.2.0.post1"))
    assert probe_problem(wrong, "cpu") == "it imports 'petals' instead of farmesh"
    other = json.dumps(dict(probe, engine_commit="0" * 40))
    assert probe_problem(other, "cpu") == f"farmesh is commit {'0' * 40}, not {PINNED}"
    assert probe_problem("Traceback ...", "cpu") == "the engine's check printed no result"
    labels = {"farnode.lock": lock_digest(lock_path("cpu")), "farnode.engine.commit": PINNED}
    assert image_labels_problem(f"sha256:ab {json.dumps(labels)}", "cpu") == ""
    assert "built from engine lock 0123" in image_labels_problem(
        f"sha256:ab {json.dumps(dict(labels, **{'farnode.lock': '0123'}))}", "cpu")
    assert "(none)" in image_labels_problem("sha256:ab null", "cpu")


VER = json.dumps({"Client": {"Version": "28.2.2"}, "Server": {"Version": "28.2.2", "Platform": {
    "Name": "Docker Engine - Community"}}})


def test_setup_builds_once_then_status_finds_the_verified_image(app_paths, real_probe_output, engine_archive,
                                                               monkeypatch):
    monkeypatch.setenv(engine_lock.SOURCE_ENV, str(engine_archive))
    rt = DockerRuntime(source_root=REPO, data_dir=app_paths.data_dir, variant="cpu", host_env=dict(os.environ))
    assert rt.image == engine_image("cpu")
    labels = json.dumps({"farnode.lock": lock_digest(lock_path("cpu")), "farnode.engine.commit": PINNED})
    inspect = (0, f"sha256:feed {labels}\n")
    st = rt.parse_status([(0, VER), (0, "{}"), (1, f"Error: No such image: {rt.image}")])
    assert st.available and not st.engine_ready and "not built yet" in st.message
    st = rt.parse_status([(0, VER), (0, "{}"), inspect])
    assert not st.engine_ready and "not verified yet" in st.message

    steps = rt.setup_steps()
    build = steps[0].argv
    assert build[:5] == ("docker", "build", "--progress=plain", "-t", rt.image) and build[-1] == str(rt.build_dir)
    assert (rt.build_dir / "Dockerfile").is_file() and "build" in steps[0].label and "once" in steps[0].label
    probe = steps[1].argv
    assert probe[-4:] == (rt.image, "python", "-m", "farnode_desktop.engine.probe")
    assert probe[probe.index("--stop-signal") + 1] == "SIGINT"
    envs = dict(probe[i + 1].split("=", 1) for i, x in enumerate(probe) if x == "-e")
    assert envs["FARMESH_CACHE"] == "/cache" and not any("PETALS" in k for k in envs)

    outputs = {steps[0]: (0, "#12 DONE 0.1s\n"), steps[1]: (0, real_probe_output), steps[2]: inspect}
    seen = []
    results = run_steps(steps, progress=seen.append,
                        runner=lambda step, cancel: StepResult(step, *outputs[step]))
    rt.after_setup(results)
    assert [p.step for p in seen][:3] == [s.label for s in steps] and seen[-1].done
    st = rt.parse_status([(0, VER), (0, "{}"), inspect])
    assert st.engine_ready and st.message == ""
    rebuilt = (0, f"sha256:beef {labels}\n")  # another image under the tag (rebuilt outside the app)
    assert not rt.parse_status([(0, VER), (0, "{}"), rebuilt]).engine_ready

    # An image that holds another engine fails the set-up at its verification, naming what is wrong.
    wrong = json.dumps(dict(json.loads(real_probe_output.strip().splitlines()[-1]), engine="petals"))
    outputs[steps[1]] = (0, wrong)
    with pytest.raises(FarNodeError, match="while verifying the engine: it imports 'petals' instead of farmesh"):
        run_steps(steps, runner=lambda step, cancel: StepResult(step, *outputs[step]))


def test_a_configured_image_is_pulled_and_refused_unless_built_from_this_lock(app_paths):
    rt = DockerRuntime(source_root=REPO, data_dir=app_paths.data_dir, variant="cpu",
                       image="registry.example/farnode-engine:cpu", host_env={})
    steps = rt.setup_steps()
    assert steps[0].argv == ("docker", "pull", "registry.example/farnode-engine:cpu")
    assert not rt.build_dir.exists()  # nothing is built for a configured image
    foreign = (0, 'sha256:1 {"org.opencontainers.image.title": "petals"}')
    st = rt.parse_status([(0, VER), (0, "{}"), foreign])
    assert not st.engine_ready and "cannot be used: it was built from engine lock (none)" in st.message
    assert "clear the Docker image setting" in st.message
    assert isinstance(steps[-1], SetupStep) and steps[-1].verify(foreign[1]).startswith("it was built from")
