"""The run record in Redis, and the only code that knows its key names and Lua: runs,
task states, attempts, logs (records, scripts, values), the claim to submit a run
(claims), pages of the runs index (listing), flow versions (versions), live workers'
records (workers), notification deliveries (notifications), the schedule's pause switch
and recent ticks (schedule_switch), pruning (retention), and the documents built from a
record (status, logs). Other modules call its methods; none holds its Redis client.
"""
