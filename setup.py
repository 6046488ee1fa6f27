"""The optional C extension; everything else about the package is in pyproject.toml.

``actionrec.data._jpeg`` decodes only the region of a JPEG that a pipeline keeps, with the
system's libjpeg-turbo (Debian/Ubuntu: ``apt install libjpeg-dev``). It is optional: without a
compiler or the headers the install goes on, and frames decode whole with OpenCV, to the same
pixels (see ``actionrec.data.jpeg``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "actionrec.data._jpeg",
            sources=["src/actionrec/data/_jpeg.c"],
            libraries=["jpeg"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
