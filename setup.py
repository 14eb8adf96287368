"""Build for edge-agent.

`drivers/` and `buffer/` install as `edge_agent.drivers` and
`edge_agent.buffer`; `config/` ships as the package data `edge_agent.data`
(profiles, code tables, example site files).  The filtering kernel is one
Cython pure-Python-mode source (kernel.py, and ladder.py, its graded-warning
pass): compiled when Cython and a C compiler are
available, importable as plain Python otherwise.
"""
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

KERNEL = "edge_agent/filtering/kernel.py"
CDSS = "edge_agent/profile/cdss.py"          # the CDSS encoder's loop (edge_agent/profile/encode.py)
LADDER = "edge_agent/filtering/ladder.py"       # the kernel's graded-warning pass, compiled with it


class OptionalBuildExt(build_ext):
    """Build the kernel if possible; never fail the install because of it."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler: the pure-Python twin is used
            print(f"edge-agent: compiled kernel not built ({exc}); using pure Python", file=sys.stderr)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(f"edge-agent: compiled kernel not built ({exc}); using pure Python", file=sys.stderr)


def extensions():
    if os.environ.get("EDGE_AGENT_NO_CYTHON"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    return cythonize(
        [KERNEL, LADDER, CDSS],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False,
                             "cdivision": True, "initializedcheck": False},
        quiet=True,
    )


setup(
    name="edge-agent",
    version="0.1.0",
    description="Edge gateway agent for underground mines: Modbus/OPC UA in, "
                "threshold filtering, durable buffer, MQTT and spec files out",
    python_requires=">=3.11",
    packages=[
        "edge_agent",
        "edge_agent.alarms",
        "edge_agent.filtering",
        "edge_agent.profile",
        "edge_agent.forward",
        "edge_agent.console",
        "edge_agent.drivers",
        "edge_agent.drivers.sim",
        "edge_agent.buffer",
        "edge_agent.data",
        "edge_agent.systemd",
    ],
    package_dir={
        "edge_agent": "edge_agent",
        "edge_agent.drivers": "drivers",
        "edge_agent.drivers.sim": "drivers/sim",
        "edge_agent.buffer": "buffer",
        "edge_agent.data": "config",
        "edge_agent.systemd": "systemd",
    },
    package_data={"edge_agent.data": ["*.yaml", "*.csv", "profiles/*.yaml", "profiles/*.csv", "demo/*.yaml",
                                      "points/*.csv"],
                  "edge_agent.systemd": ["*.service"],
                  "edge_agent": ["locale/*.po"],
                  "edge_agent.console": ["static/*.css", "static/*.js", "static/*.svg"]},
    include_package_data=False,
    ext_modules=extensions(),
    cmdclass={"build_ext": OptionalBuildExt},
    install_requires=[
        "pymodbus[serial]>=3.16,<3.17",
        "aiomqtt>=2.5,<3",
        "orjson>=3.9",
        "pydantic>=2.5,<3",
        "PyYAML>=6",
        "asyncua>=1.1,<3",
        "sqlite-utils>=3.35",
        "prometheus-client>=0.19",
        "aiohttp>=3.9,<4",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-timeout", "hypothesis>=6", "pyftpdlib>=1.5.9", "pyOpenSSL", "psutil>=5.9",
                 "paho-mqtt>=2", "Cython>=3.0,<4", "mfusepy>=3.1",
                 "playwright>=1.40"],     # drives Debian's chromium (never downloads a browser)
    },
    entry_points={"console_scripts": ["edge-agent = edge_agent.cli:main"]},
    zip_safe=False,
)
