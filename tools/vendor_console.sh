#!/usr/bin/env bash
# Rebuild the web console's vendored front-end libraries from npm.
#
# The versions are pinned in tools/vendor_console/package.json and, with every
# transitive dependency, in its package-lock.json (`npm ci` installs exactly
# those). The output goes into appliance/console/static/vendor/<lib>/ and is
# committed: a node serves these files itself (no CDN; appliances have no
# internet), so nothing here runs at install time.
#
#   uplot/       uPlot.iife.min.js, uPlot.min.css          (graphs)
#   chartjs/     chart.umd.min.js                          (pie charts: uPlot draws no pies)
#   codemirror/  codemirror.bundle.js (window.CM)          (script and config editor, diffs)
#   xterm/       xterm.js, xterm.css, addon-fit.js         (terminal)
#
# Each directory also gets the LICENSE files of what it contains and a
# VERSIONS file (package@version, one a line).
#
# Usage: bash tools/vendor_console.sh        (needs node and npm)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
src="$here/vendor_console"
out="$repo/appliance/console/static/vendor"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cp "$src/package.json" "$src/package-lock.json" "$src/codemirror-entry.js" "$work/"
# --ignore-scripts: esbuild's binary comes from its platform package
# (@esbuild/linux-x64 and friends); no install script has to run.
npm ci --prefix "$work" --ignore-scripts --no-audit --no-fund >/dev/null
nm="$work/node_modules"

version() { node -p "require('$nm/$1/package.json').version"; }

rm -rf "$out/uplot" "$out/chartjs" "$out/codemirror" "$out/xterm"
mkdir -p "$out/uplot" "$out/chartjs" "$out/codemirror/licenses" "$out/xterm"

# uPlot: the IIFE build sets window.uPlot.
cp "$nm/uplot/dist/uPlot.iife.min.js" "$nm/uplot/dist/uPlot.min.css" "$out/uplot/"
cp "$nm/uplot/LICENSE" "$out/uplot/LICENSE"
echo "uplot@$(version uplot)" > "$out/uplot/VERSIONS"

# Chart.js: the UMD build sets window.Chart; it carries @kurkle/color inside.
cp "$nm/chart.js/dist/chart.umd.min.js" "$out/chartjs/"
cp "$nm/chart.js/LICENSE.md" "$out/chartjs/LICENSE.md"
cp "$nm/@kurkle/color/LICENSE.md" "$out/chartjs/LICENSE.kurkle-color.md"
printf '%s\n' "chart.js@$(version chart.js)" "@kurkle/color@$(version @kurkle/color)" > "$out/chartjs/VERSIONS"

# xterm.js and its fit add-on: UMD builds that set window.Terminal and window.FitAddon.
cp "$nm/@xterm/xterm/lib/xterm.js" "$nm/@xterm/xterm/css/xterm.css" "$out/xterm/"
cp "$nm/@xterm/addon-fit/lib/addon-fit.js" "$out/xterm/"
cp "$nm/@xterm/xterm/LICENSE" "$out/xterm/LICENSE"
cp "$nm/@xterm/addon-fit/LICENSE" "$out/xterm/LICENSE.addon-fit"
printf '%s\n' "@xterm/xterm@$(version @xterm/xterm)" "@xterm/addon-fit@$(version @xterm/addon-fit)" \
    > "$out/xterm/VERSIONS"

# CodeMirror 6 ships ES modules: one esbuild pass makes a single IIFE (window.CM).
"$nm/.bin/esbuild" "$work/codemirror-entry.js" --bundle --minify --format=iife \
    --global-name=CM --target=es2020 --legal-comments=eof --log-level=warning \
    --outfile="$out/codemirror/codemirror.bundle.js"
# Everything the bundle took from node_modules, with its licence.
: > "$out/codemirror/VERSIONS"
for pkg in codemirror @codemirror/autocomplete @codemirror/commands @codemirror/language \
           @codemirror/legacy-modes @codemirror/lint @codemirror/merge @codemirror/search \
           @codemirror/state @codemirror/view @codemirror/streamparser @lezer/common \
           @lezer/highlight @lezer/lr @marijn/find-cluster-break crelt style-mod w3c-keyname; do
    echo "$pkg@$(version "$pkg")" >> "$out/codemirror/VERSIONS"
    cp "$nm/$pkg/LICENSE" "$out/codemirror/licenses/$(echo "$pkg" | tr '/' '_' | sed 's/^@//').LICENSE"
done
# The bundle must not carry a package this list misses.
missing="$("$nm/.bin/esbuild" "$work/codemirror-entry.js" --bundle --format=iife --metafile="$work/meta.json" \
    --outfile="$work/check.js" --log-level=error >/dev/null && node -e '
const meta = require(process.argv[1]);
const listed = new Set(require("fs").readFileSync(process.argv[2], "utf8").trim().split("\n").map(l => l.replace(/@[^@]*$/, "")));
const used = new Set();
for (const f of Object.keys(meta.inputs)) {
  const m = f.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (m) used.add(m[1]);
}
console.log([...used].filter(p => !listed.has(p)).join(" "));
' "$work/meta.json" "$out/codemirror/VERSIONS")"
if [ -n "$missing" ]; then
    echo "vendor_console.sh: the CodeMirror bundle uses packages not listed: $missing" >&2
    exit 1
fi

echo "vendored into $out:"
(cd "$out" && find uplot chartjs codemirror xterm -type f | sort | sed 's/^/  /')
