"""The edge device in the loop: a device reached over the user's own OpenSSH, and what runs there.

``address`` parses ``--device`` (``ssh://[user@]host[:port]`` or an alias of ``~/.ssh/config``);
``ssh`` is one shared OpenSSH connection per command (the system client does all authentication:
edgecls never reads a password or a key); ``device_store`` and ``machine_probe`` are the two
stdlib-only scripts sent to the device (a content-hashed cache, and "what machine is this", which
the host runs on itself too); ``session`` ties them into one :class:`~edgecls.devices.session.Device`
that copies models once and times them there with ``pi_infer.py``; ``readiness`` is ``edgecls
device check``. Nothing here imports TensorFlow.
"""
