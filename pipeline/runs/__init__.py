"""What happens to a run from the caller's side: submit it and wait (submit), send its
canvas with recorded ids (dispatch), the compact fan-out to cleanup (fanout), restart
what failed (restart), cancel (cancel), and the in-process debug path (local).
"""
