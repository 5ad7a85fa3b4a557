#!/bin/sh
# Builder stage only: `slim-litert PEER_EXTRAS`. Cuts ai-edge-litert (the amd64 peer image's TFLite
# runtime, about 60 MB unpacked with its dependencies) down to what the peer's CPU interpreter uses, and with
# `tflite` among PEER_EXTRAS fails the build unless a runtime is installed (a wheel missing for the architecture
# would otherwise give an image whose MODEL=tflite peers stop at start-up).
#
# What the interpreter loads, traced with `strace -e openat` around a MODEL=tflite peer training (MLP and small
# CNN): ai_edge_litert/__init__.py, interpreter.py, metrics_portable.py, metrics_interface.py,
# _pywrap_litert_interpreter_wrapper.so and libpywrap_litert_common.so (the interpreter with its built-in ops and
# XNNPACK), and libLiteRt.so, which __init__.py preloads only if the file exists: it is the CompiledModel API's
# library, and the interpreter trains without it (checked: the peer trains, 2 MB less resident memory). Nothing of
# protobuf, ml_dtypes, tqdm, flatbuffers or backports.strenum is imported (they serve the converter, AOT and
# tool modules). Removed: everything else in the package (the 19 MB WebGPU accelerator a CPU peer never loads,
# NPU vendor plugins, the AOT compiler and the tools, *_pb2 and schema modules), those five distributions, and
# the symbol tables of the two libraries kept (strip --strip-unneeded: the dynamic symbols stay).
# tests/containers/test_images.py runs a MODEL=tflite peer in the image and checks that these files are gone.
set -eu
extras="${1:-}"
python=/opt/tangle/bin/python
site=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
pkg="$site/ai_edge_litert"

case ",$extras," in
  *,tflite,*)
    if [ ! -d "$pkg" ] && [ ! -d "$site/tflite_runtime" ]; then
      echo "PEER_EXTRAS=tflite: no TensorFlow Lite runtime was installed for $(uname -m)" \
        "(ai-edge-litert: x86_64; tflite-runtime 2.14.0: aarch64, armv7l)" >&2
      exit 1
    fi
    ;;
esac
[ -d "$pkg" ] || exit 0 # arm64, armv7 (tflite-runtime, 5 MB: nothing to cut) or no runtime asked for

keep=$(mktemp -d)
mkdir "$keep/__pycache__"
for module in __init__ interpreter metrics_portable metrics_interface; do
  mv "$pkg/$module.py" "$keep/" # a missing file fails the build: a new ai-edge-litert layout needs a new trace
  for compiled in "$pkg/__pycache__/$module".*.pyc; do
    [ -e "$compiled" ] && mv "$compiled" "$keep/__pycache__/"
  done
done
for library in _pywrap_litert_interpreter_wrapper.so libpywrap_litert_common.so; do
  strip --strip-unneeded "$pkg/$library"
  mv "$pkg/$library" "$keep/"
done
rm -rf "$pkg"
mv "$keep" "$pkg"
chmod 755 "$pkg"
python3 -m pip --python "$python" uninstall --yes --disable-pip-version-check \
  protobuf ml_dtypes tqdm flatbuffers backports.strenum
# the namespace folders those leave behind (google/, backports/)
find "$site" -mindepth 1 -maxdepth 1 -type d -empty -delete
