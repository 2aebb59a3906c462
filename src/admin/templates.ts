/**
 * Ready rules for the cases MSPs automate first (seeds/: alert → ticket, failed backup → notify,
 * SLA breach → escalate, …). Installing one saves it into the tenant as a draft, to be reviewed
 * (connection ids, addresses, status names of the tenant's PSA) and then activated.
 *
 * Each template carries a sample event that its rule matches; the test suite runs every template
 * against its sample through the admin `test` operation, so a template that stops matching its
 * own case fails the build.
 */

export interface Template {
  readonly id: string;
  readonly name: string;
  readonly category: 'tickets' | 'alerts' | 'backup' | 'sla' | 'security' | 'clients' | 'reports';
  readonly description: string;
  /** What to set before activating: connection ids, addresses, names. */
  readonly setup: readonly string[];
  /** The rule document (its id is the template id unless the install names another). */
  readonly rule: Readonly<Record<string, unknown>>;
  /** An event the rule matches. */
  readonly sample: Readonly<Record<string, unknown>>;
}

const ticketSample = (type: string, data: Record<string, unknown>, previous?: Record<string, unknown>) => ({
  id: `sample-${type}`,
  source: 'halo',
  type,
  time: '2026-11-02T09:30:00Z',
  data,
  ...(previous ? { previous } : {}),
});

export const TEMPLATES: readonly Template[] = [
  {
    id: 'alert-to-ticket',
    name: 'RMM alert → PSA ticket',
    category: 'alerts',
    description:
      'Opens a PSA ticket for every critical or high RMM alert, at most one per device and alert kind per hour, with a link back to the alert.',
    setup: ['connection "psa": the PSA the ticket goes to', 'map alert severities to your PSA priorities'],
    rule: {
      source: '*',
      on: 'alert.created',
      when: 'alert.severity in ["critical", "high"]',
      throttle: { max: 1, per: '1h', key: '{{ alert.device_id }}:{{ alert.kind }}' },
      onError: 'retry',
      actions: [
        {
          id: 'ticket',
          type: 'psa.ticket.create',
          connection: 'psa',
          with: {
            summary: '[{{ alert.severity }}] {{ alert.kind }} on {{ alert.device_name }}',
            details: '{{ alert.message }}\n\nAlert: {{ alert.url }}',
            client_id: '{{ alert.client_id }}',
          },
        },
        { type: 'log', with: { message: 'alert {{ alert.id }} → ticket {{ steps.ticket.output.id }}' } },
      ],
    },
    sample: {
      id: 'sample-alert',
      source: 'rmm',
      type: 'alert.created',
      data: {
        id: 'a-1',
        severity: 'critical',
        kind: 'cpu',
        device_id: 'd-9',
        device_name: 'SRV-01',
        client_id: 12,
      },
    },
  },
  {
    id: 'backup-failed-notify',
    name: 'Failed backup → chat and email',
    category: 'backup',
    description: 'Posts every failed backup job to the NOC channel and emails the service desk.',
    setup: ['connection "slack-noc": the Slack webhook of the NOC channel', 'the service desk address'],
    rule: {
      source: '*',
      on: 'backup.failed',
      onError: 'continue',
      actions: [
        {
          type: 'slack',
          connection: 'slack-noc',
          with: { text: ':x: Backup failed: {{ backup.job }} for {{ backup.client }} ({{ backup.error }})' },
        },
        {
          type: 'email',
          connection: 'smtp',
          with: {
            to: ['servicedesk@example.com'],
            subject: 'Backup failed: {{ backup.client }} / {{ backup.job }}',
            text: 'The backup job {{ backup.job }} failed at {{ event.time }}: {{ backup.error }}',
          },
        },
      ],
    },
    sample: {
      id: 'sample-backup',
      source: 'backup',
      type: 'backup.failed',
      data: { job: 'nightly', client: 'Contoso', error: 'VSS timeout' },
    },
  },
  {
    id: 'sla-breach-escalate',
    name: 'SLA breached → escalate',
    category: 'sla',
    description:
      'When a ticket breaches its SLA, raises it to priority 1, adds an internal note and tells the team lead in Teams.',
    setup: ['connection "psa"', 'the Teams webhook URL of the escalation channel', 'your P1 priority id'],
    rule: {
      source: '*',
      on: 'ticket.updated',
      when: 'changed(ticket.sla_breached) and ticket.sla_breached == true',
      onError: 'retry',
      actions: [
        { type: 'psa.ticket.update', connection: 'psa', with: { id: '{{ ticket.id }}', priority_id: 1 } },
        {
          type: 'psa.note.add',
          connection: 'psa',
          with: {
            ticket_id: '{{ ticket.id }}',
            text: 'SLA breached: escalated to P1 by Signalbox.',
            internal: true,
          },
        },
        {
          type: 'teams',
          with: {
            url: 'https://example.webhook.office.com/webhookb2/replace-me',
            title: 'SLA breached: #{{ ticket.id }}',
            text: '{{ ticket.summary }} ({{ ticket.client_name }})',
          },
        },
      ],
    },
    sample: ticketSample(
      'ticket.updated',
      { id: 4242, summary: 'Email down', client_name: 'Contoso', sla_breached: true },
      { id: 4242, summary: 'Email down', client_name: 'Contoso', sla_breached: false },
    ),
  },
  {
    id: 'device-offline-ticket',
    name: 'Device offline 15 minutes → ticket',
    category: 'alerts',
    description:
      'Opens a ticket when a device has stayed offline for 15 minutes; coming back online within that time cancels it.',
    setup: ['connection "psa"', 'the source name of your RMM if not every source should count'],
    rule: {
      source: '*',
      on: ['device.offline', 'device.online'],
      when: 'device.status == "offline"',
      debounce: { for: '15m', key: '{{ device.id }}' },
      onError: 'retry',
      actions: [
        {
          type: 'psa.ticket.create',
          connection: 'psa',
          with: {
            summary: '{{ device.name }} offline for 15 minutes',
            client_id: '{{ device.client_id }}',
            details: 'Last seen {{ device.last_seen }}.',
          },
        },
      ],
    },
    sample: {
      id: 'sample-offline',
      source: 'rmm',
      type: 'device.offline',
      data: {
        id: 'd-9',
        name: 'SRV-01',
        status: 'offline',
        client_id: 12,
        last_seen: '2026-11-02T09:14:00Z',
      },
    },
  },
  {
    id: 'client-onboarding',
    name: 'New client → onboarding tickets',
    category: 'clients',
    description:
      'When a client (Halo) or company (ConnectWise, Autotask) is created, opens the onboarding tickets: documentation, RMM agent rollout, backup setup.',
    setup: ['connection "psa"', 'edit the ticket list to your onboarding checklist'],
    rule: {
      source: '*',
      on: ['client.created', 'company.created'],
      onError: 'continue',
      actions: ['Collect documentation and credentials', 'Deploy the RMM agent', 'Set up backups'].map(
        (s) => ({
          type: 'psa.ticket.create',
          connection: 'psa',
          with: { summary: `Onboarding: ${s} ({{ data.name }})`, client_id: '{{ data.id }}' },
        }),
      ),
    },
    sample: {
      id: 'sample-client',
      source: 'halo',
      type: 'client.created',
      data: { id: 77, name: 'Fabrikam' },
    },
  },
  {
    id: 'security-incident-page',
    name: 'Security incident → page on-call and P1 ticket',
    category: 'security',
    description:
      'A security alert (EDR, antivirus, SIEM) pages the on-call engineer through a signed webhook and opens a P1 ticket.',
    setup: ['the paging webhook URL and its signing secret', 'connection "psa"'],
    rule: {
      source: '*',
      on: 'alert.created',
      when: 'alert.category == "security" or alert.kind in ["ransomware", "malware", "intrusion"]',
      onError: 'retry',
      actions: [
        {
          type: 'webhook',
          with: {
            url: 'https://paging.example.com/v1/incidents',
            body: { title: 'Security: {{ alert.kind }} on {{ alert.device_name }}', severity: 'critical' },
            secret: 'replace-me',
          },
        },
        {
          type: 'psa.ticket.create',
          connection: 'psa',
          with: { summary: 'SECURITY: {{ alert.kind }} on {{ alert.device_name }}', priority_id: 1 },
        },
      ],
    },
    sample: {
      id: 'sample-security',
      source: 'edr',
      type: 'alert.created',
      data: { id: 's-1', category: 'security', kind: 'ransomware', device_name: 'LAPTOP-7' },
    },
  },
  {
    id: 'stale-ticket-reminder',
    name: 'No update for 7 days → reminder',
    category: 'tickets',
    description:
      'A ticket that has had no update for 7 days (and is not closed) gets an internal note and its owner an email.',
    setup: ['connection "psa"', 'the reminder recipients'],
    rule: {
      source: '*',
      on: ['ticket.created', 'ticket.updated'],
      when: 'ticket.closedFlag != true and ticket.hasbeenclosed != true',
      debounce: { for: '7d', key: '{{ ticket.id }}' },
      actions: [
        {
          type: 'psa.note.add',
          connection: 'psa',
          with: { ticket_id: '{{ ticket.id }}', text: 'No update for 7 days.', internal: true },
        },
      ],
    },
    sample: ticketSample('ticket.updated', { id: 4243, summary: 'VPN slow', hasbeenclosed: false }),
  },
  {
    id: 'ticket-acknowledge',
    name: 'Ticket created → acknowledge the requester',
    category: 'tickets',
    description:
      'Adds a customer-visible note to every new ticket saying it was received and when to expect an answer.',
    setup: ['connection "psa"', 'your response-time wording'],
    rule: {
      source: '*',
      on: 'ticket.created',
      actions: [
        {
          type: 'psa.note.add',
          connection: 'psa',
          with: {
            ticket_id: '{{ ticket.id }}',
            text: 'Thank you, we received your request #{{ ticket.id }} and will answer within 4 business hours.',
            internal: false,
          },
        },
      ],
    },
    sample: ticketSample('ticket.created', { id: 4244, summary: 'New laptop' }),
  },
  {
    id: 'ticket-resolved-survey',
    name: 'Ticket resolved → satisfaction survey',
    category: 'tickets',
    description:
      'Emails a satisfaction survey link when a ticket closes (ConnectWise closedFlag, Halo hasbeenclosed).',
    setup: ['connection "smtp"', 'your survey URL'],
    rule: {
      source: '*',
      on: 'ticket.updated',
      when: '(changed(ticket.closedFlag) and ticket.closedFlag == true) or (changed(ticket.hasbeenclosed) and ticket.hasbeenclosed == true)',
      actions: [
        {
          type: 'email',
          connection: 'smtp',
          with: {
            to: ['{{ ticket.user_email }}'],
            subject: 'How did we do on #{{ ticket.id }}?',
            text: 'Your ticket "{{ ticket.summary }}" is resolved. Tell us how it went: https://survey.example.com/?t={{ ticket.id }}',
          },
        },
      ],
    },
    sample: ticketSample(
      'ticket.updated',
      { id: 4245, summary: 'Printer', hasbeenclosed: true, user_email: 'jane@contoso.example' },
      { id: 4245, summary: 'Printer', hasbeenclosed: false, user_email: 'jane@contoso.example' },
    ),
  },
  {
    id: 'p1-escalated-page',
    name: 'P1 ticket moved to Escalated → chat',
    category: 'tickets',
    description: 'Tells the NOC channel when a priority 1 ticket moves to the Escalated status.',
    setup: ['connection "slack-noc"', 'your escalation status name and P1 value'],
    rule: {
      source: '*',
      on: 'ticket.updated',
      when: 'ticket.priority == 1 and changed(ticket.status) and ticket.status == "Escalated"',
      actions: [
        {
          type: 'slack',
          connection: 'slack-noc',
          with: { text: ':rotating_light: P1 #{{ ticket.id }} escalated: {{ ticket.summary }}' },
        },
      ],
    },
    sample: ticketSample(
      'ticket.updated',
      { id: 4246, summary: 'Site down', priority: 1, status: 'Escalated' },
      { id: 4246, summary: 'Site down', priority: 1, status: 'New' },
    ),
  },
  {
    id: 'disk-space-low',
    name: 'Low disk space → ticket once a day',
    category: 'alerts',
    description: 'A disk under 10% free opens one ticket per device and volume a day; repeats are throttled.',
    setup: ['connection "psa"'],
    rule: {
      source: '*',
      on: 'alert.created',
      when: 'alert.kind == "disk" and num(alert.free_percent) < 10',
      throttle: { max: 1, per: '24h', key: '{{ alert.device_id }}:{{ alert.volume }}' },
      actions: [
        {
          type: 'psa.ticket.create',
          connection: 'psa',
          with: { summary: '{{ alert.device_name }} {{ alert.volume }}: {{ alert.free_percent }}% free' },
        },
      ],
    },
    sample: {
      id: 'sample-disk',
      source: 'rmm',
      type: 'alert.created',
      data: { kind: 'disk', free_percent: '6.5', device_id: 'd-3', device_name: 'FS-01', volume: 'D:' },
    },
  },
  {
    id: 'vip-ticket-priority',
    name: 'VIP client ticket → raise priority',
    category: 'tickets',
    description:
      'New tickets from the clients on the VIP list get priority 2 and the account manager is told.',
    setup: ['connection "psa"', 'the VIP client names', 'the account manager address'],
    rule: {
      source: '*',
      on: 'ticket.created',
      when: 'ticket.client_name in ["Contoso Ltd", "Fabrikam"]',
      actions: [
        { type: 'psa.ticket.update', connection: 'psa', with: { id: '{{ ticket.id }}', priority_id: 2 } },
        {
          type: 'email',
          connection: 'smtp',
          with: {
            to: ['am@example.com'],
            subject: 'VIP ticket #{{ ticket.id }}',
            text: '{{ ticket.client_name }}: {{ ticket.summary }}',
          },
        },
      ],
    },
    sample: ticketSample('ticket.created', { id: 4247, summary: 'Outlook', client_name: 'Contoso Ltd' }),
  },
  {
    id: 'weekly-open-p1-digest',
    name: 'Weekly digest to the service manager',
    category: 'reports',
    description:
      'Every Monday at 08:00 (tenant time zone) calls your reporting webhook to send the open-P1 digest.',
    setup: ['the reporting webhook URL', 'the time zone'],
    rule: {
      source: '*',
      schedule: { cron: '0 8 * * 1', tz: 'Europe/London' },
      actions: [
        {
          type: 'webhook',
          with: {
            url: 'https://reports.example.com/digest',
            body: { report: 'open-p1', at: '{{ event.time }}' },
          },
        },
      ],
    },
    sample: { id: 'sample-tick', source: 'signalbox', type: 'schedule.tick', data: {} },
  },
];

export function template(id: string): Template | undefined {
  return TEMPLATES.find((t) => t.id === id);
}
