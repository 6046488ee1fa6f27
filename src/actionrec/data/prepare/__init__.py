"""Dataset preparation behind ``scripts/``: file lists, frame extraction, re-encoding, checks.

- :mod:`~actionrec.data.prepare.filelists`: scan a tree, split it, write mmaction2 lists.
- :mod:`~actionrec.data.prepare.splits`: official splits of UCF101, HMDB51, Something-Something V2.
- :mod:`~actionrec.data.prepare.frames`: videos to frame folders (``img_00001.jpg`` ...).
- :mod:`~actionrec.data.prepare.reencode`: videos re-encoded smaller with dense keyframes.
- :mod:`~actionrec.data.prepare.checking`: decode every entry of a list, report the bad ones.
- :mod:`~actionrec.data.prepare.jobs`: process pool with a progress bar, atomic writes.

Submodules are imported on their own (no re-exports here) so that the scripts' ``--help``
does not wait for torch to load.
"""
