#!/usr/bin/env bash
# GENERATED from shared/src/store/tables.rs by tests/tests/template.rs: do not edit. Regenerate with
#   HERALD_BLESS=1 cargo nextest run -p herald-tests --test template
# LocalStack runs it once it is ready: it creates Herald's tables and queues with awslocal, named as
# herald-local --backend aws and infra/template.yaml name them (prefix HERALD_TABLE_PREFIX, default herald-).
set -euo pipefail
PREFIX="${HERALD_TABLE_PREFIX:-herald-}"

create_table() { # name, then the create-table arguments
  local name="$1"; shift
  if awslocal dynamodb describe-table --table-name "$name" >/dev/null 2>&1; then
    echo "herald: table $name exists"; return 0
  fi
  awslocal dynamodb create-table --table-name "$name" --billing-mode PAY_PER_REQUEST "$@" >/dev/null
  awslocal dynamodb wait table-exists --table-name "$name"
  echo "herald: created table $name"
}

enable_ttl() { # table attribute
  awslocal dynamodb update-time-to-live --table-name "$1" \
    --time-to-live-specification "Enabled=true,AttributeName=$2" >/dev/null
}

create_queue_with_dlq() { # name visibility-timeout retention
  local dlq_url dlq_arn
  dlq_url=$(awslocal sqs create-queue --queue-name "$1-dlq" --attributes MessageRetentionPeriod=1209600 --query QueueUrl --output text)
  dlq_arn=$(awslocal sqs get-queue-attributes --queue-url "$dlq_url" --attribute-names QueueArn --query Attributes.QueueArn --output text)
  awslocal sqs create-queue --queue-name "$1" --attributes "{\"VisibilityTimeout\":\"$2\",\"MessageRetentionPeriod\":\"$3\",\"RedrivePolicy\":\"{\\\"deadLetterTargetArn\\\":\\\"$dlq_arn\\\",\\\"maxReceiveCount\\\":\\\"5\\\"}\"}" >/dev/null
  echo "herald: created queue $1 and $1-dlq"
}

# connections (ConnectionsTable)
create_table "${PREFIX}connections" \
  --attribute-definitions AttributeName=connection_id,AttributeType=S AttributeName=user_id,AttributeType=S \
  --key-schema AttributeName=connection_id,KeyType=HASH \
  --global-secondary-indexes '[{"IndexName":"by_user","KeySchema":[{"AttributeName":"user_id","KeyType":"HASH"},{"AttributeName":"connection_id","KeyType":"RANGE"}],"Projection":{"ProjectionType":"ALL"}}]'
enable_ttl "${PREFIX}connections" expires_at

# subscriptions (SubscriptionsTable)
create_table "${PREFIX}subscriptions" \
  --attribute-definitions AttributeName=connection_id,AttributeType=S AttributeName=event_name,AttributeType=S AttributeName=event_shard,AttributeType=S AttributeName=user_event,AttributeType=S \
  --key-schema AttributeName=connection_id,KeyType=HASH AttributeName=event_name,KeyType=RANGE \
  --global-secondary-indexes '[{"IndexName":"by_event","KeySchema":[{"AttributeName":"event_shard","KeyType":"HASH"},{"AttributeName":"connection_id","KeyType":"RANGE"}],"Projection":{"ProjectionType":"ALL"}},{"IndexName":"by_user_event","KeySchema":[{"AttributeName":"user_event","KeyType":"HASH"},{"AttributeName":"connection_id","KeyType":"RANGE"}],"Projection":{"ProjectionType":"ALL"}}]'
enable_ttl "${PREFIX}subscriptions" expires_at

# deliveries (DeliveriesTable)
create_table "${PREFIX}deliveries" \
  --attribute-definitions AttributeName=push_id,AttributeType=S AttributeName=connection_id,AttributeType=S \
  --key-schema AttributeName=push_id,KeyType=HASH AttributeName=connection_id,KeyType=RANGE
enable_ttl "${PREFIX}deliveries" expires_at

# conversations (ConversationsTable)
create_table "${PREFIX}conversations" \
  --attribute-definitions AttributeName=session_channel,AttributeType=S AttributeName=user_id,AttributeType=S AttributeName=id,AttributeType=N \
  --key-schema AttributeName=session_channel,KeyType=HASH \
  --global-secondary-indexes '[{"IndexName":"by_user","KeySchema":[{"AttributeName":"user_id","KeyType":"HASH"},{"AttributeName":"id","KeyType":"RANGE"}],"Projection":{"ProjectionType":"ALL"}}]'

# messages (MessagesTable)
create_table "${PREFIX}messages" \
  --attribute-definitions AttributeName=session_channel,AttributeType=S AttributeName=id,AttributeType=N \
  --key-schema AttributeName=session_channel,KeyType=HASH AttributeName=id,KeyType=RANGE

# members (MembersTable)
create_table "${PREFIX}members" \
  --attribute-definitions AttributeName=member_id,AttributeType=S AttributeName=session_channel,AttributeType=S \
  --key-schema AttributeName=member_id,KeyType=HASH AttributeName=session_channel,KeyType=RANGE \
  --global-secondary-indexes '[{"IndexName":"by_channel","KeySchema":[{"AttributeName":"session_channel","KeyType":"HASH"},{"AttributeName":"member_id","KeyType":"RANGE"}],"Projection":{"ProjectionType":"KEYS_ONLY"}}]'

# counters (CountersTable)
create_table "${PREFIX}counters" \
  --attribute-definitions AttributeName=counter_id,AttributeType=S \
  --key-schema AttributeName=counter_id,KeyType=HASH

# templates (TemplatesTable)
create_table "${PREFIX}templates" \
  --attribute-definitions AttributeName=template_id,AttributeType=S AttributeName=name_channel,AttributeType=S AttributeName=kind,AttributeType=S \
  --key-schema AttributeName=template_id,KeyType=HASH \
  --global-secondary-indexes '[{"IndexName":"by_name","KeySchema":[{"AttributeName":"name_channel","KeyType":"HASH"},{"AttributeName":"template_id","KeyType":"RANGE"}],"Projection":{"ProjectionType":"ALL"}},{"IndexName":"by_kind","KeySchema":[{"AttributeName":"kind","KeyType":"HASH"},{"AttributeName":"template_id","KeyType":"RANGE"}],"Projection":{"ProjectionType":"ALL"}}]'

# users (UsersTable)
create_table "${PREFIX}users" \
  --attribute-definitions AttributeName=user_id,AttributeType=S AttributeName=user_shard,AttributeType=S \
  --key-schema AttributeName=user_id,KeyType=HASH \
  --global-secondary-indexes '[{"IndexName":"by_shard","KeySchema":[{"AttributeName":"user_shard","KeyType":"HASH"},{"AttributeName":"user_id","KeyType":"RANGE"}],"Projection":{"ProjectionType":"ALL"}}]'

# event-types (EventTypesTable)
create_table "${PREFIX}event-types" \
  --attribute-definitions AttributeName=event_type,AttributeType=S AttributeName=kind,AttributeType=S \
  --key-schema AttributeName=event_type,KeyType=HASH \
  --global-secondary-indexes '[{"IndexName":"by_kind","KeySchema":[{"AttributeName":"kind","KeyType":"HASH"},{"AttributeName":"event_type","KeyType":"RANGE"}],"Projection":{"ProjectionType":"ALL"}}]'

# notifications (NotificationsTable)
create_table "${PREFIX}notifications" \
  --attribute-definitions AttributeName=notification_id,AttributeType=S AttributeName=user_id,AttributeType=S AttributeName=created_key,AttributeType=S AttributeName=event_shard,AttributeType=S \
  --key-schema AttributeName=notification_id,KeyType=HASH \
  --global-secondary-indexes '[{"IndexName":"by_user","KeySchema":[{"AttributeName":"user_id","KeyType":"HASH"},{"AttributeName":"created_key","KeyType":"RANGE"}],"Projection":{"ProjectionType":"ALL"}},{"IndexName":"by_event","KeySchema":[{"AttributeName":"event_shard","KeyType":"HASH"},{"AttributeName":"created_key","KeyType":"RANGE"}],"Projection":{"ProjectionType":"ALL"}}]'
enable_ttl "${PREFIX}notifications" expires_at

# mailings (MailingsTable)
create_table "${PREFIX}mailings" \
  --attribute-definitions AttributeName=mailing_id,AttributeType=S AttributeName=kind,AttributeType=S AttributeName=created_key,AttributeType=S \
  --key-schema AttributeName=mailing_id,KeyType=HASH \
  --global-secondary-indexes '[{"IndexName":"by_kind","KeySchema":[{"AttributeName":"kind","KeyType":"HASH"},{"AttributeName":"created_key","KeyType":"RANGE"}],"Projection":{"ProjectionType":"ALL"}}]'
enable_ttl "${PREFIX}mailings" expires_at

# history (HistoryTable)
create_table "${PREFIX}history" \
  --attribute-definitions AttributeName=stream,AttributeType=S AttributeName=offset,AttributeType=N \
  --key-schema AttributeName=stream,KeyType=HASH AttributeName=offset,KeyType=RANGE
enable_ttl "${PREFIX}history" expires_at

# Queues (infra/template.yaml: NotificationsQueue, FanoutQueue, RedeliveryQueue, PlatformQueue and their dead-letter queues).
create_queue_with_dlq "${PREFIX}notifications" 360 345600
create_queue_with_dlq "${PREFIX}fanout" 180 86400
create_queue_with_dlq "${PREFIX}redelivery" 180 86400
create_queue_with_dlq "${PREFIX}platform" 720 345600
echo "herald: LocalStack resources ready"
