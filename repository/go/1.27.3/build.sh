#!/usr/bin/env bash
set -euo pipefail
cp -a /piston/fetch/tree/go "$PISTON_PACKAGE_DIR/go"
rm -rf "$PISTON_PACKAGE_DIR/go/__init__.py" "$PISTON_PACKAGE_DIR/go/__pycache__"
chown -R 0:0 "$PISTON_PACKAGE_DIR/go"
export PATH="$PISTON_PACKAGE_DIR/go/bin:$PATH" GOTOOLCHAIN=local GOPATH=/tmp/gopath \
    GOCACHE="$PISTON_PACKAGE_DIR/cache" XDG_CONFIG_HOME=/tmp/config GOFLAGS=-buildvcs=false \
    GO111MODULE=off CGO_ENABLED=0
go version | grep -q "go$PISTON_PACKAGE_VERSION"
# Pre-warm the build cache with the standard packages that programs commonly use.
mkdir -p /tmp/warm
cat > /tmp/warm/warm.go <<'GO'
package main

import (
	"bufio"
	"bytes"
	"container/heap"
	"container/list"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
)

var _ = []any{bufio.NewReader, bytes.NewBuffer, heap.Init, list.New, errors.New, math.Sqrt, big.NewInt,
	rand.Intn, regexp.MustCompile, sort.Ints, strconv.Itoa, strings.Split, sync.NewCond, time.Now, unicode.IsDigit}

func main() { fmt.Fprintln(os.Stdout, "OK") }
GO
cd /tmp/warm
go build -o a.out warm.go
./a.out
rm -f "$GOCACHE/trim.txt"
