#!/usr/bin/env bash
# Regenerates the committed icons from this one description (ImageMagick 6 `convert`).
# The glyph: a hub (the master) scattering to three nodes (peers). Tray states differ by colour;
# the syncing state has 9 progress frames (a pie filling clockwise) so the icon shows progress.
# Outputs: lanscatter.png (256x256 app/installer icon), lanscatter.ico (16..256), tray-*.png (64x64).
set -euo pipefail
cd "$(dirname "$0")"
C=${CONVERT:-/usr/bin/convert}

glyph() { # $1 = size, $2 = background colour, $3 = extra draw args (may be empty)
    local s=$1 bg=$2 extra=${3:-}
    local r=$((s * 7 / 64)) cx=$((s / 2)) cy=$((s / 2)) lw=$((s / 20 > 1 ? s / 20 : 1))
    local n1x=$((s * 16 / 64)) n1y=$((s * 18 / 64))
    local n2x=$((s * 48 / 64)) n2y=$((s * 18 / 64))
    local n3x=$((s / 2)) n3y=$((s * 50 / 64))
    local nr=$((s * 5 / 64)) rad=$((s * 12 / 64))
    # Background: a full square (plus optional progress pie), cut to a rounded square by an alpha mask.
    $C \( -size "${s}x${s}" xc:"$bg" ${extra:+-draw "$extra"} \) \
        \( -size "${s}x${s}" xc:black -fill white -draw "roundrectangle 1,1 $((s - 2)),$((s - 2)) $rad,$rad" \) \
        -alpha off -compose CopyOpacity -composite -compose Over \
        -stroke white -strokewidth "$lw" \
        -draw "line $cx,$cy $n1x,$n1y" -draw "line $cx,$cy $n2x,$n2y" -draw "line $cx,$cy $n3x,$n3y" \
        -stroke none -fill white \
        -draw "circle $cx,$cy $((cx + r)),$cy" \
        -draw "circle $n1x,$n1y $((n1x + nr)),$n1y" \
        -draw "circle $n2x,$n2y $((n2x + nr)),$n2y" \
        -draw "circle $n3x,$n3y $((n3x + nr)),$n3y" \
        -define png:exclude-chunks=date,time PNG32:"$4"
}

glyph 256 '#1f6fb2' '' lanscatter.png
for s in 16 24 32 48 64 128; do glyph "$s" '#1f6fb2' '' "/tmp/lanscatter-ico-$s.png"; done
$C /tmp/lanscatter-ico-{16,24,32,48,64,128}.png lanscatter.png lanscatter.ico
rm -f /tmp/lanscatter-ico-*.png

glyph 64 '#7a7f85' '' tray-idle.png
glyph 64 '#2e9d4f' '' tray-uptodate.png
glyph 64 '#c62828' '' tray-error.png
# Syncing: dark blue base, a lighter pie of the done fraction (frame k = k/8 done).
for k in 0 1 2 3 4 5 6 7 8; do
    if ((k == 0)); then extra=''
    elif ((k == 8)); then extra='fill #4aa3f0 rectangle 0,0 63,63'
    else extra="fill #4aa3f0 path 'M 32,32 L 32,-16 A 48,48 0 $((k > 4 ? 1 : 0)),1 $(python3 -c "import math;a=2*math.pi*$k/8;print(f'{32+48*math.sin(a):.1f},{32-48*math.cos(a):.1f}')") Z'"
    fi
    glyph 64 '#0d3f6b' "$extra" "tray-syncing-$k.png"
done
