#!/usr/bin/env bash
# Rebuilds the sample clips from scratch with espeak-ng and ffmpeg (no downloads, no licences to track).
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
espeak-ng -v en-us -s 150 -w "$tmp/a1.wav" "Good morning everyone. Today we will talk about the weather and the mountains."
espeak-ng -v en-gb+f3 -p 70 -s 140 -w "$tmp/b1.wav" "That sounds wonderful. I love the mountains in the spring."
espeak-ng -v en-us -s 150 -w "$tmp/a2.wav" "Then let us begin with the northern valleys."
ffmpeg -hide_banner -loglevel error -y -i "$tmp/a1.wav" -i "$tmp/b1.wav" -i "$tmp/a2.wav" \
  -f lavfi -t 0.8 -i anullsrc=r=22050:cl=mono \
  -filter_complex "[3:a]asplit=3[s1][s2][s3];[s1][0:a][s2][1:a][s3][2:a]concat=n=6:v=0:a=1,aresample=48000[a]" \
  -map "[a]" "$tmp/dialog.wav"
# face.jpg: NASA's public-domain portrait of astronaut Eileen Collins (via scikit-image's test data),
# drifting slowly over a soft background, so --video face has a face to follow
ffmpeg -hide_banner -loglevel error -y -f lavfi -i "gradients=size=640x360:rate=30:speed=0.002" \
  -loop 1 -i face.jpg -i "$tmp/dialog.wav" \
  -filter_complex "[1:v]scale=300:300[f];[0:v][f]overlay=x='170+20*sin(t/2)':y='30+6*sin(t/3)':shortest=1[v]" \
  -map "[v]" -map 2:a -shortest -c:v libx264 -preset veryslow -crf 30 -pix_fmt yuv420p \
  -c:a aac -b:a 64k -ac 2 -metadata title="nava-dub sample: two voices" two_voices.mp4
# the transcript an editor would start from: each line where it is spoken (0.8 s gaps between them)
d() { soxi -D "$1"; }
python3 - "$(d "$tmp/a1.wav")" "$(d "$tmp/b1.wav")" "$(d "$tmp/a2.wav")" > two_voices.json <<'PY'
import json, sys
lines = [("SPEAKER_00", "Good morning everyone. Today we will talk about the weather and the mountains."),
         ("SPEAKER_01", "That sounds wonderful. I love the mountains in the spring."),
         ("SPEAKER_00", "Then let us begin with the northern valleys.")]
t, spans = 0.8, []
for (speaker, text), length in zip(lines, map(float, sys.argv[1:])):
    spans.append({"start_s": round(t, 3), "end_s": round(t + length, 3), "speaker": speaker, "text": text})
    t += length + 0.8
print(json.dumps({"version": 1, "speakers": ["SPEAKER_00", "SPEAKER_01"], "spans": spans}, indent=2))
PY
echo "wrote $(pwd)/two_voices.mp4 and two_voices.json"
