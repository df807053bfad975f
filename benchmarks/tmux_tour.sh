#!/usr/bin/env bash
# A tour of the whole loop in a real terminal: seqplay in a 120x40 tmux session, driven by keys.
#
#   open a file by a typed, completed path, pick LSTM, train, change the LR, stop, train a second run,
#   generate with a preset, branch, overlay the two runs, run each Insight view (gradients is cancelled
#   once it reports progress; attention on an LSTM must answer with its one-line error), quit.
#
# Fails (exit 1) on a Python traceback on screen, the app exiting early, or a step that does not show
# what it should within its timeout; the last screen is printed. Usage:
#   benchmarks/tmux_tour.sh [WORKDIR]        (default: a fresh temporary folder; needs tmux)
# tests/test_tmux_tour.py runs it as a slow test.
set -u
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-$(mktemp -d)}"
SESSION="tour"
SOCKET="seqplay-tour-$$"  # a private tmux server: other tmux users are not disturbed
tmux() { command tmux -L "$SOCKET" "$@"; }
mkdir -p "$WORK/files"
export SEQPLAY_HOME="$WORK/home" PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
python - "$WORK/files/tiny.txt" <<'EOF'
import sys
text = ("the cat sat on the mat. the dog ate the bone. a bird sang in the tree, and the cat watched it.\n"
        "when the rain came the dog ran home; the bird flew off and the mat was wet.\n") * 150
open(sys.argv[1], "w").write(text)
EOF

screen() { tmux capture-pane -p -t "$SESSION" -S -60; }
fail() {
    echo "tour failed: $*" >&2
    screen >&2
    tmux kill-session -t "$SESSION" 2>/dev/null
    exit 1
}
check() {  # no traceback, still running
    local s; s="$(screen)"
    grep -q "Traceback" <<<"$s" && fail "a traceback is on screen"
    grep -q "SEQPLAY-EXIT" <<<"$s" && fail "the app exited"
    return 0
}
wait_for() {  # wait_for TEXT [SECONDS]: until TEXT is on screen
    local text="$1" limit="${2:-30}" start=$SECONDS
    while ! screen | grep -qF -- "$text"; do
        check
        (( SECONDS - start > limit )) && fail "no '$text' after ${limit}s"
        sleep 0.3
    done
}
keys() {  # one key (or literal text) at a time: the app handles each before the next
    for k in "$@"; do tmux send-keys -t "$SESSION" "$k"; sleep 0.35; done
    check
}
type_text() { tmux send-keys -t "$SESSION" -l "$1"; sleep 0.5; check; }

type -P tmux >/dev/null || { echo "tmux is not installed" >&2; exit 2; }
tmux new-session -d -s "$SESSION" -x 120 -y 40 \
    "cd '$WORK/files' && python -m seqplay; echo SEQPLAY-EXIT=\$?; sleep 600"
trap 'tmux kill-server 2>/dev/null' EXIT
wait_for "Built-in corpora" 60
sleep 3  # the other panes mount after the first paint

echo "1. open tiny.txt by a typed path (completed with the right arrow)"
keys Tab                  # focus: corpora list, then the path input
type_text "./ti"
keys Right Enter          # the suggestion completes ./tiny.txt; Enter opens it
wait_for "tiny.txt  ·" 20

echo "2. pick LSTM (Escape leaves the path input, 2 shows Model)"
keys Escape 2 Down Down Down Down Down Down Down Down Down Down Up Up Up   # to the last (mlm), back to lstm
wait_for "model: lstm" 10

echo "3. train, change the LR, stop"
keys t
wait_for "running" 120
keys l
wait_for "New learning rate" 10
sleep 1  # the old value is selected: typing replaces it
type_text 0.002
keys Enter
wait_for "learning rate -> 0.002" 10
keys x
wait_for "training stopped" 120

echo "4. a second run for the overlay"
keys t
wait_for "running" 120
sleep 3
keys x
wait_for "training stopped" 120

echo "5. generate with a preset, branch"
keys 4
wait_for "Prompt" 10
keys Tab Tab Tab Tab Tab Tab Enter   # from the output: alternatives, tree, tabs, model, snapshot, preset
wait_for "greedy" 5
keys Down Enter
keys Tab Tab
type_text "the "
keys Enter
wait_for "done: " 60
keys Left Left Left Tab Down Enter
wait_for "at #" 30

echo "6. overlay the two runs"
keys 5
wait_for "val bpc" 10
keys Space Down Space o
wait_for "validation bits per character" 10

echo "7. each Insight view"
keys 6
wait_for "gradients through" 10
keys C-r
wait_for "/19]" 120
keys Escape
wait_for "cancelled" 60
for view in "no self-attention" "gates in" "surprisal done" "table done|press b" "memorization done"; do
    keys Enter; sleep 1; keys Down; sleep 0.5; keys Enter; sleep 0.5; keys C-r   # the next analysis, run
    start=$SECONDS
    until screen | grep -qE "$view"; do
        check
        (( SECONDS - start > 180 )) && fail "no result for ${view%% *}"
        sleep 0.5
    done
    echo "   shown: $(screen | grep -oE "$view" | head -1)"
done

echo "8. quit"
tmux send-keys -t "$SESSION" q
start=$SECONDS
until screen | grep -q "SEQPLAY-EXIT="; do
    (( SECONDS - start > 30 )) && fail "q did not quit"
    sleep 0.3
done
screen | grep -q "Traceback" && fail "a traceback on the way out"
screen | grep -q "SEQPLAY-EXIT=0" || fail "seqplay exited with an error"
echo "tour passed"
