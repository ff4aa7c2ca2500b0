#!/usr/bin/env bash
# Rebuild the API-only Matterbridge that bench/matterbridge.py and
# `bench/compare.py --matterbridge BIN` measure (issues 13 and 26). Matterbridge
# (github.com/42wim/matterbridge, Go, Apache-2.0) is not part of roomlink: this script
# fetches its files into a build directory outside the repository and builds them there.
#
#   bench/build_matterbridge.sh [--src DIR] [--out DIR] [--no-apt]
#
#   --out DIR   build directory (default /tmp/mb); the binary is DIR/matterbridge
#   --src DIR   take the source files from DIR/<owner>/<repo>/<path> (a checkout of each
#               repository at the commits below, or the files copied there by hand)
#               instead of fetching them from raw.githubusercontent.com
#   --no-apt    do not install the Debian packages (they are already there)
#
# What it builds, and how (session 29 ran exactly this, with --src, on Debian 12):
#
# * Go 1.19 (Debian's golang-go) in GOPATH mode (GO111MODULE=off), GOPATH = the build
#   directory, then /usr/share/gocode, where Debian's golang-*-dev packages put their
#   sources. No module proxy, no network during the build.
# * Matterbridge's libraries from Debian's packages (versions on Debian 12, several older
#   than Matterbridge's go.mod asks for): labstack/echo 4.2.1, spf13/viper 1.10.1,
#   sirupsen/logrus 1.9.0, gorilla/websocket 1.5.0, hashicorp/golang-lru 0.5.4,
#   kyokomi/emoji 2.2.12, fsnotify 1.6.0, mitchellh/mapstructure 1.5.0,
#   x-cray/logrus-prefixed-formatter 0.5.2 and what apt pulls in with them.
# * Matterbridge's own files: only those the API bridge needs (FILES below): main,
#   version, bridge, bridge/config, bridge/api, gateway (gateway, router, handlers),
#   gateway/samechannel, and of gateway/bridgemap only bridgemap.go and api.go, so the
#   API bridge is the only one built in (that is the bridge list; no file is edited for
#   it). `matterbridge -version` says `1.26.1-dev` (master after v1.26.0). The commit
#   given for each file is the one at which the copy used here was stored; the files were
#   taken from a stored copy of the repository, one version per file, not from one
#   checkout, and they build together.
# * Two small libraries Debian lacks, from their repositories: olahol/melody (the
#   WebSocket hub, v1.1.x: melody.go, session.go, config.go, hub.go; envelope.go, a
#   three-field struct that was not in the stored copy, is written below) and
#   zfjagann/golang-ring (ring.go, from the repository under its current name
#   zealws/golang-ring; Matterbridge pins 19bcea1b6289, this may be a later version).
#
# Changes to upstream's code, all of them:
# * gateway/gateway.go (the patch below): tengo (github.com/d5/tengo, not packaged by
#   Debian) is not built in. The built-in outgoing script internal/tengo/outmessage.tengo,
#   which upstream decompresses, compiles and runs for every message and every
#   destination, is done by its two rewrites in plain Go with regexps compiled once (strip
#   IRC colours when relaying from IRC to a non-IRC bridge; strip Discord's custom-emoji
#   ids). A configured tengo script (Tengo InMessage/OutMessage/RemoteNickFormat) is an
#   error instead. This makes the build cheaper per message than upstream's.
# * Two imports of matterbridge.go are served by stand-ins written below, so that
#   matterbridge.go itself is unchanged: github.com/google/gops/agent (used only with
#   -gops; here Listen returns an error) and github.com/matterbridge/logrus-prefixed-
#   formatter (Matterbridge's fork; the stand-in formats with Debian's x-cray original and
#   ignores PrefixPadding and the -debug caller fields). Only the start-up log lines look
#   different.
# * Being API-only, the binary is about 11 MB and its RSS about 8-9 MiB at start, 15 MiB
#   after a 5,000-message burst; a full Matterbridge binary links every bridge (the issue
#   measured 47-50 MiB).
set -euo pipefail

OUT=/tmp/mb
SRC=
APT=1
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT=$2; shift 2 ;;
        --src) SRC=$2; shift 2 ;;
        --no-apt) APT=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//' | head -n -1; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

if [ "$APT" = 1 ]; then
    apt-get update -qq
    apt-get install -y -qq golang-go \
        golang-github-labstack-echo-dev golang-github-spf13-viper-dev \
        golang-github-sirupsen-logrus-dev golang-github-gorilla-websocket-dev \
        golang-github-kyokomi-emoji-dev golang-github-hashicorp-golang-lru-dev \
        golang-github-fsnotify-fsnotify-dev golang-github-mitchellh-mapstructure-dev \
        golang-github-x-cray-logrus-prefixed-formatter-dev golang-github-mgutz-ansi-dev
    # session 29 also installed golang-github-gomarkdown-markdown-dev, which none of the
    # files built here imports (bridge/helper, which does, is not built)
fi

# repository, commit, path, sha256 of the file as used (gateway.go: before the patch)
FILES="
42wim/matterbridge 9236ddb44dbdb6b7a014fdb6cf8829b1451c8261 matterbridge.go 2d3b5c0c4c7582a4d29d460ff4358eda0aa2fc3f71a49dc8fadf8c1692cdb76a
42wim/matterbridge 24f6747516a9a80f82068656df50b3972928ba56 version/version.go 2d0831a346817a0de44ad58465bf16f684ee18dfbb4aa6410de509619633a93f
42wim/matterbridge dcf81b19e907cc294a1b9fbc9963442b520f01b0 bridge/bridge.go bfc3bff52d00cf3ab95e754c4ff37f0acb3956152e48e4d412e285e7b39d4acc
42wim/matterbridge 9989a7c6e2e9a2a9efe22108f766923ce79abcdf bridge/config/config.go 243bddc128b9c306e35fb64c2838c924a788ecce6b2858ad39655d7cdc04cd43
42wim/matterbridge e68ddcf5c1c579b29b73e908ead263fa1ebbc694 bridge/api/api.go 59b3ddcc4e1588e462267cd3d214f34b935591d8e3379725e84f5f0e6230892a
42wim/matterbridge 4ab72acec656dafd304f88359b509b1f27c06604 gateway/gateway.go 2532697d0200d25011c70e37723eafe78338264ec34a101b20ca7aed02fa9ad6
42wim/matterbridge 802dc3c324a3a1224519ba95ab615199f6368391 gateway/router.go 4b41bdac1497e4395407dddcf30f2c56840792339ad0a14f7073a8c7a43d7dcb
42wim/matterbridge 3c36f651beafbaeca36a7112a47378e8a4d19d7d gateway/handlers.go 6290b8260a07bd0a2f0eae42a245533e5ad54e49816ffb51489986e1293d93a0
42wim/matterbridge 2b7eab629d959b10388d21cf6242fdfbdbe0e197 gateway/bridgemap/bridgemap.go 8c447b3aaa3016e92668e26b9ddddffa548a3d42818d3bebfd172584c85bb3f0
42wim/matterbridge 2b7eab629d959b10388d21cf6242fdfbdbe0e197 gateway/bridgemap/api.go 8beceb82a1c09f49e8f9202f57ee55018dea997e7737aaffc516f842d03fa34f
42wim/matterbridge a3d5606641a9a77cb36fb1b1e324dc97f330fe3f gateway/samechannel/samechannel.go 143087affc1cabc06d8215587fd84ce03f13b1774b3a9ae50b8342cd2fc51ab2
olahol/melody 7bd65910e5abdd2e7396c23acb13475bff79d1af melody.go 080e0ac1ae8925ea75cf56793901ab088ee64977351966ebc4f824e9160c5d06
olahol/melody b8366eef4762be84355906342c412ef5228eedb8 session.go 96c9a059805f35ce066878443aaaf73ec4d600addbfe292008b8d3e7cf3d21a3
olahol/melody ee4453a90447f924351f337b4b58b228f7e22735 config.go 9898c3f57ebbde201abda7a3b3b2697952d66ac9f08ae010adabc3c0a236ac93
olahol/melody 7bd65910e5abdd2e7396c23acb13475bff79d1af hub.go d3f585f0b269ecf8356f985b218b2c4edf0dbf16e771f9d5533e57fcc76ade35
zealws/golang-ring edcf891e47f5c80e802428956cbc88ab802758c6 ring.go 3f9d0606bd0d4156a9311617b6bce5ba7aea83ced9c2da7035afbf852f9e2bca
"
# hub.go: the stored copy's version that goes with melody.go above (exit is a
# chan *envelope, hub has closed() and len()); the commit it was stored at is not known,
# so it is fetched at melody.go's commit and the checksum tells whether that is the same
# text. None of the sums could be checked against GitHub here (no network): a mismatch
# means a different text from the one measured, not necessarily a broken build.

declare -A IMPORT=(
    [42wim/matterbridge]=github.com/42wim/matterbridge
    [olahol/melody]=github.com/olahol/melody
    [zealws/golang-ring]=github.com/zfjagann/golang-ring
)

echo "$FILES" | while read -r repo commit path sum; do
    [ -n "$repo" ] || continue
    dest="$OUT/src/${IMPORT[$repo]}/$path"
    mkdir -p "$(dirname "$dest")"
    if [ -n "$SRC" ]; then
        cp "$SRC/$repo/$path" "$dest"
    else
        curl -fsSL "https://raw.githubusercontent.com/$repo/$commit/$path" -o "$dest"
    fi
    if ! echo "$sum  $dest" | sha256sum -c --quiet - >/dev/null 2>&1; then
        echo "warning: $repo $path differs from the text used in session 29" >&2
    fi
done

# melody's envelope type (envelope.go in melody v1.1.x)
cat > "$OUT/src/github.com/olahol/melody/envelope.go" <<'EOF'
package melody

type envelope struct {
	t      int
	msg    []byte
	filter filterFunc
}
EOF

mkdir -p "$OUT/src/github.com/google/gops/agent" \
    "$OUT/src/github.com/matterbridge/logrus-prefixed-formatter"
cat > "$OUT/src/github.com/google/gops/agent/agent.go" <<'EOF'
// Package agent: a stand-in for github.com/google/gops/agent in this API-only build
// (gops is not packaged by Debian). matterbridge.go calls it only with -gops.
package agent

import "errors"

type Options struct{}

func Listen(opts Options) error { return errors.New("gops agent not built into this binary") }

func Close() {}
EOF
cat > "$OUT/src/github.com/matterbridge/logrus-prefixed-formatter/formatter.go" <<'EOF'
// Package prefixed: a stand-in for github.com/matterbridge/logrus-prefixed-formatter
// (Matterbridge's fork, not packaged by Debian) in this API-only build. It accepts the
// fork's fields that matterbridge.go sets and formats with Debian's
// github.com/x-cray/logrus-prefixed-formatter, the fork's upstream. PrefixPadding and
// the caller fields (used with -debug only) are accepted and ignored.
package prefixed

import (
	"runtime"

	upstream "github.com/x-cray/logrus-prefixed-formatter"
	"github.com/sirupsen/logrus"
)

type TextFormatter struct {
	PrefixPadding    int
	DisableColors    bool
	FullTimestamp    bool
	CallerFormatter  func(function, file string) string
	CallerPrettyfier func(f *runtime.Frame) (string, string)

	inner *upstream.TextFormatter
}

func (f *TextFormatter) Format(entry *logrus.Entry) ([]byte, error) {
	if f.inner == nil {
		f.inner = &upstream.TextFormatter{DisableColors: f.DisableColors, FullTimestamp: f.FullTimestamp}
	}
	return f.inner.Format(entry)
}
EOF

# The one change to Matterbridge's code: tengo out of gateway/gateway.go (see above).
patch --quiet "$OUT/src/github.com/42wim/matterbridge/gateway/gateway.go" <<'PATCH'
--- a/gateway/gateway.go
+++ b/gateway/gateway.go
@@ -1,8 +1,8 @@
 package gateway
 
 import (
+	"errors"
 	"fmt"
-	"io/ioutil"
 	"os"
 	"regexp"
 	"strings"
@@ -10,9 +10,6 @@
 
 	"github.com/42wim/matterbridge/bridge"
 	"github.com/42wim/matterbridge/bridge/config"
-	"github.com/42wim/matterbridge/internal"
-	"github.com/d5/tengo/v2"
-	"github.com/d5/tengo/v2/stdlib"
 	lru "github.com/hashicorp/golang-lru"
 	"github.com/kyokomi/emoji/v2"
 	"github.com/sirupsen/logrus"
@@ -559,31 +556,17 @@
 	return p[0]
 }
 
+// API-only build (roomlink's bench/build_matterbridge.sh): tengo is not built in. A
+// configured tengo script is an error; the built-in outgoing script
+// (internal/tengo/outmessage.tengo, which upstream decompresses, compiles and runs for
+// every message and destination) is done by its two rewrites in plain Go.
+var errNoTengo = errors.New("tengo scripts are not built into this binary")
+
 func modifyInMessageTengo(filename string, msg *config.Message) error {
 	if filename == "" {
 		return nil
 	}
-	res, err := ioutil.ReadFile(filename)
-	if err != nil {
-		return err
-	}
-	s := tengo.NewScript(res)
-	s.SetImports(stdlib.GetModuleMap(stdlib.AllModuleNames()...))
-	_ = s.Add("msgText", msg.Text)
-	_ = s.Add("msgUsername", msg.Username)
-	_ = s.Add("msgUserID", msg.UserID)
-	_ = s.Add("msgAccount", msg.Account)
-	_ = s.Add("msgChannel", msg.Channel)
-	c, err := s.Compile()
-	if err != nil {
-		return err
-	}
-	if err := c.Run(); err != nil {
-		return err
-	}
-	msg.Text = c.Get("msgText").String()
-	msg.Username = c.Get("msgUsername").String()
-	return nil
+	return errNoTengo
 }
 
 func (gw *Gateway) modifyUsernameTengo(msg *config.Message, br *bridge.Bridge) (string, error) {
@@ -591,84 +574,25 @@
 	if filename == "" {
 		return "", nil
 	}
-	res, err := ioutil.ReadFile(filename)
-	if err != nil {
-		return "", err
-	}
-	s := tengo.NewScript(res)
-	s.SetImports(stdlib.GetModuleMap(stdlib.AllModuleNames()...))
-	_ = s.Add("result", "")
-	_ = s.Add("msgText", msg.Text)
-	_ = s.Add("msgUsername", msg.Username)
-	_ = s.Add("msgUserID", msg.UserID)
-	_ = s.Add("nick", msg.Username)
-	_ = s.Add("msgAccount", msg.Account)
-	_ = s.Add("msgChannel", msg.Channel)
-	_ = s.Add("channel", msg.Channel)
-	_ = s.Add("msgProtocol", msg.Protocol)
-	_ = s.Add("remoteAccount", br.Account)
-	_ = s.Add("protocol", br.Protocol)
-	_ = s.Add("bridge", br.Name)
-	_ = s.Add("gateway", gw.Name)
-	c, err := s.Compile()
-	if err != nil {
-		return "", err
-	}
-	if err := c.Run(); err != nil {
-		return "", err
-	}
-	return c.Get("result").String(), nil
+	return "", errNoTengo
 }
 
-func (gw *Gateway) modifyOutMessageTengo(origmsg *config.Message, msg *config.Message, br *bridge.Bridge) (bool, error) {
-	filename := gw.BridgeValues().Tengo.OutMessage
-	var (
-		res  []byte
-		err  error
-		drop bool
-	)
-
-	if filename == "" {
-		res, err = internal.Asset("tengo/outmessage.tengo")
-		if err != nil {
-			return drop, err
-		}
-	} else {
-		res, err = ioutil.ReadFile(filename)
-		if err != nil {
-			return drop, err
-		}
-	}
-
-	s := tengo.NewScript(res)
+var (
+	reIRCColors    = regexp.MustCompile(`\x03(?:\d{1,2}(?:,\d{1,2})?)?|[[:cntrl:]]`)
+	reDiscordEmoji = regexp.MustCompile(`<a?(:.*?:)[0-9]+>`)
+)
 
-	s.SetImports(stdlib.GetModuleMap(stdlib.AllModuleNames()...))
-	_ = s.Add("inAccount", origmsg.Account)
-	_ = s.Add("inProtocol", origmsg.Protocol)
-	_ = s.Add("inChannel", origmsg.Channel)
-	_ = s.Add("inGateway", origmsg.Gateway)
-	_ = s.Add("inEvent", origmsg.Event)
-	_ = s.Add("outAccount", br.Account)
-	_ = s.Add("outProtocol", br.Protocol)
-	_ = s.Add("outChannel", msg.Channel)
-	_ = s.Add("outGateway", gw.Name)
-	_ = s.Add("outEvent", msg.Event)
-	_ = s.Add("msgText", msg.Text)
-	_ = s.Add("msgUsername", msg.Username)
-	_ = s.Add("msgUserID", msg.UserID)
-	_ = s.Add("msgDrop", drop)
-	c, err := s.Compile()
-	if err != nil {
-		return drop, err
+func (gw *Gateway) modifyOutMessageTengo(origmsg *config.Message, msg *config.Message, br *bridge.Bridge) (bool, error) {
+	if gw.BridgeValues().Tengo.OutMessage != "" {
+		return false, errNoTengo
 	}
-
-	if err := c.Run(); err != nil {
-		return drop, err
+	// strip irc colors if we're not sending to an irc bridge
+	if origmsg.Protocol == "irc" && br.Protocol != "irc" {
+		msg.Text = reIRCColors.ReplaceAllString(msg.Text, "")
+	}
+	// strip custom emoji
+	if origmsg.Protocol == "discord" {
+		msg.Text = reDiscordEmoji.ReplaceAllString(msg.Text, "$1")
 	}
-
-	drop = c.Get("msgDrop").Bool()
-	msg.Text = c.Get("msgText").String()
-	msg.Username = c.Get("msgUsername").String()
-
-	return drop, nil
+	return false, nil
 }
PATCH

# Debian ships echo v4 as github.com/labstack/echo; GOPATH mode needs the /v4 path.
mkdir -p "$OUT/src/github.com/labstack/echo"
ln -sfn /usr/share/gocode/src/github.com/labstack/echo "$OUT/src/github.com/labstack/echo/v4"

cd "$OUT/src/github.com/42wim/matterbridge"
GOPATH="$OUT:/usr/share/gocode" GO111MODULE=off GOPROXY=off GOFLAGS= \
    go build -o "$OUT/matterbridge" .
go version
"$OUT/matterbridge" -version
echo "built $OUT/matterbridge"
