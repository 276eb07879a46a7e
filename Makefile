# farmhand — conventional entry points. `make test` is what CI runs.
BUILD ?= build
JOBS ?= $(shell nproc)
WERROR ?= ON
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# make install PREFIX=/usr DESTDIR=/tmp/pkg (deploy/README.md)
PREFIX ?= /usr/local
DESTDIR ?=

DEPS := build-essential cmake pkg-config ninja-build \
  libzmq3-dev cppzmq-dev libprotobuf-dev protobuf-compiler libspdlog-dev \
  libgtest-dev libgmock-dev libsqlite3-dev sqlite3 libyaml-cpp-dev libcli11-dev \
  libexpected-dev nlohmann-json3-dev libre2-dev procps clang-format \
  libopenimageio-dev openimageio-tools libopenexr-dev libopencolorio-dev \
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev libavfilter-dev ffmpeg libdeflate-dev zlib1g-dev \
  fonts-dejavu-core \
  python3-zmq python3-protobuf python3-pytest \
  libsystemd-dev systemd \
  libcpp-httplib-dev libssl-dev prometheus-cpp-dev prometheus \
  chromium chromium-driver python3-selenium

.PHONY: deps build test demo bench install clean format

deps:
	@missing=""; for p in $(DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFARMHAND_WERROR=$(WERROR)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

demo: build
	./config/demo.sh $(BUILD)

bench: build
	./bench/run_all.sh $(BUILD)

# Binaries, /etc/farmhand/farmhand.yaml (never overwritten), systemd units, the
# sysusers file and the Python package; see deploy/CMakeLists.txt for the paths.
install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

format:
	git ls-files '*.cpp' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD)
