"""Breach contact: the DPO turns a list of affected pseudonyms into e-mail addresses and notices.

One concern per module:

* ``inputs`` — reading the pseudonym list (line numbers, malformed lines, its SHA-256)
* ``dpo_key`` — rebuilding the DPO's private key from its holders' shares, checked against this vault
* ``reseal`` — moving a vault from a whole DPO key to a shared one (re-sealing every e-mail, resumable)
* ``lookup`` — batched store reads: sealed e-mail, erased or unknown for each pseudonym
* ``opening`` — opening sealed e-mails in a pool of worker processes, in order, bounded
* ``state`` — the run's resumable progress (a private SQLite file next to the output)
* ``output`` — the CSV files, created with mode 0600
* ``progress`` — the progress bar (terminals only)
* ``officers`` / ``ceremony`` / ``registry`` — officers' keys and proofs of possession; the founding
  ceremony; the registry that hands out a key only with its enrolment chain verified
* ``statements`` — the exact bytes officers sign
* ``four_eyes`` — requests, approvals, and their single use bound to a run in the audit chain
* ``audit_trail`` — reading those facts back from the audit chain (never from a file an operator edits)
* ``resolve`` — the run itself (``resolve_pseudonyms``), audited before anything is opened
* ``smtp`` / ``templates`` / ``notify`` — GDPR Art. 34 notices by e-mail

Nothing here imports Flask or the web app; worker processes import only ``opening``.
"""
