# ZooKeeper entry point of the lab's image (run by busybox sh; no other shell in the image).
# It reads the environment the official zookeeper image reads, so the compose file works with either:
#   ZOO_MY_ID      this server's id (1-255), written to $ZOO_DATA_DIR/myid
#   ZOO_SERVERS    "server.1=host:2888:3888;2181 server.2=..." (empty: standalone)
#   ZOO_TICK_TIME ZOO_INIT_LIMIT ZOO_SYNC_LIMIT ZOO_MAX_CLIENT_CNXNS ZOO_4LW_COMMANDS_WHITELIST
#   ZOO_CFG_EXTRA  "key=value key=value" appended to zoo.cfg (minSessionTimeout=..., ...)
#   JVMFLAGS       extra JVM options (default a small heap)
set -e
: "${ZOO_DATA_DIR:=/data}" "${ZOO_DATA_LOG_DIR:=/datalog}" "${ZOO_CONF_DIR:=/conf}"
: "${ZOO_TICK_TIME:=2000}" "${ZOO_INIT_LIMIT:=5}" "${ZOO_SYNC_LIMIT:=2}" "${ZOO_MAX_CLIENT_CNXNS:=60}"
: "${ZOO_4LW_COMMANDS_WHITELIST:=srvr,ruok,mntr,stat}" "${JVMFLAGS:=-Xms32m -Xmx128m -XX:+UseSerialGC}"
cfg="$ZOO_CONF_DIR/zoo.cfg"
{
  echo "dataDir=$ZOO_DATA_DIR"
  echo "dataLogDir=$ZOO_DATA_LOG_DIR"
  echo "tickTime=$ZOO_TICK_TIME"
  echo "initLimit=$ZOO_INIT_LIMIT"
  echo "syncLimit=$ZOO_SYNC_LIMIT"
  echo "maxClientCnxns=$ZOO_MAX_CLIENT_CNXNS"
  echo "4lw.commands.whitelist=$ZOO_4LW_COMMANDS_WHITELIST"
  echo "admin.enableServer=false"
  echo "clientPort=2181"
  echo "quorumListenOnAllIPs=true"
  if [ -n "$ZOO_SERVERS" ]; then
    echo "standaloneEnabled=false"
    for s in $ZOO_SERVERS; do echo "$s"; done
  fi
  for kv in $ZOO_CFG_EXTRA; do echo "$kv"; done
} >"$cfg"
if [ -n "$ZOO_MY_ID" ]; then echo "$ZOO_MY_ID" >"$ZOO_DATA_DIR/myid"; fi
# shellcheck disable=SC2086 # JVMFLAGS is a list of options
exec /opt/jre/bin/java $JVMFLAGS -Dzookeeper.log.dir=/tmp -cp '/opt/zookeeper/lib/*' \
  org.apache.zookeeper.server.quorum.QuorumPeerMain "$cfg"
