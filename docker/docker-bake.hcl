# Builds the Learning Tangle images for every architecture the cluster runs:
#   docker buildx bake -f docker/docker-bake.hcl                       # both images, amd64 + arm64 + armv7
#   REGISTRY=registry.lab:5000/ docker buildx bake -f docker/docker-bake.hcl --push
#   PLATFORMS=linux/arm/v7 docker buildx bake -f docker/docker-bake.hcl peer
# `make images` (scripts/build-images.sh) calls this where a Docker engine runs and writes one image archive per
# architecture to dist/images/<arch>/ for nodes without a registry (`k3s ctr images import`, `docker load`).

# registry prefix, empty or ending in "/" (e.g. "registry.lab:5000/")
variable "REGISTRY" {
  default = ""
}

# the project version (pyproject.toml); scripts/build-images.sh passes it
variable "VERSION" {
  default = "0.1.0"
}

variable "PLATFORMS" {
  default = "linux/amd64,linux/arm64,linux/arm/v7"
}

# optional dependency groups of pyproject.toml for the peer image, comma-separated; the default, tflite, is the
# TensorFlow Lite runtime for MODEL=tflite (PEER_EXTRAS="" builds without it)
variable "PEER_EXTRAS" {
  default = "tflite"
}

variable "SOURCE" {
  default = ""
}

variable "REVISION" {
  default = ""
}

group "default" {
  targets = ["peer", "visualizer"]
}

target "_common" {
  context    = "."
  dockerfile = "docker/Dockerfile"
  platforms  = split(",", PLATFORMS)
  args = {
    VERSION  = VERSION
    SOURCE   = SOURCE
    REVISION = REVISION
  }
}

target "peer" {
  inherits = ["_common"]
  target   = "peer"
  tags     = ["${REGISTRY}learning-tangle/peer:${VERSION}"]
  args = {
    PEER_EXTRAS = PEER_EXTRAS
  }
}

target "visualizer" {
  inherits = ["_common"]
  target   = "visualizer"
  tags     = ["${REGISTRY}learning-tangle/visualizer:${VERSION}"]
}
