"""snapfs_test: what the Python tests share (tests/pytest.ini puts
tests/pylib on the path; tests/chaos/chaos.py, a script, adds it itself).

  harness     a real snapfs mount: start, status, wait_for, delta makers,
              fuse_unusable(); the daemon's log scanned for sanitizer reports
  radosgw     a throwaway Ceph RADOS Gateway (also a command:
              python3 tests/pylib/snapfs_test/radosgw.py install|run|probe)
  faultproxy  a fault-injecting HTTP proxy in front of it
  s3fixtures  the pytest fixtures of every S3 test folder (rgw, s3, bucket)
  upload      snapfs mounted with S3 options against that gateway
  cluster     several snapfs hosts on one bucket (tests/cluster/)
"""
