"""The run record in Redis, and the only code that knows its key names and Lua: runs,
task states, attempts, logs (records, scripts, values), the claim to submit a run
(claims), flow versions (versions), pruning (retention), and the documents built from
a record (status, logs). Other modules call its methods.
"""
