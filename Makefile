# Convenience wrapper around CMake: the two commands the README opens with.
#   make run    build, then run every example (the spec's examples, in C)
#   make test   build, then run the test suite
# and an extra:
#   make docs   the HTML manual into docs/html/ (man pages: $(BUILD)/man/)
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
CTEST_FLAGS ?=

.PHONY: all build run test docs clean

all: build

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: build
	cmake --build $(BUILD) --target run_examples

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_FLAGS)

docs: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) --target docs

clean:
	rm -rf $(BUILD)
